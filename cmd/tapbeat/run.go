package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit lifts the open-file limit (every connected endpoint holds
// a socket): to 1,048,576 where allowed (root with CAP_SYS_RESOURCE), else
// the soft limit to the hard one.
func raiseFileLimit(log *slog.Logger) {
	want := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return
	}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			log.Warn("cannot raise the open-file limit", "err", err)
			return
		}
	}
	log.Info("open-file limit (each connected endpoint holds one)", "limit", r.Cur)
}
