package lab

import (
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// do runs f on an OS thread that has entered network namespace ns. Sockets
// f opens stay in ns after it returns. The thread is left locked, so the
// runtime discards it when f returns and no other goroutine ever runs in
// the namespace.
func do(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		// The thread stops sharing its filesystem attributes so that setns
		// is allowed on it.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare filesystem attributes: %w", err)
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// kill sends sig to process pid.
func kill(pid int, sig syscall.Signal) error { return unix.Kill(pid, sig) }
