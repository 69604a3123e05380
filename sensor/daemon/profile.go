//go:build profile

package daemon

import (
	"net/http"
	"net/http/pprof"
	"runtime"
)

// profiling adds Go's profiles (/debug/pprof/) to the metrics listener, in
// a binary built with the tag `profile`, for load runs. Mutex and block
// profiles sample one contention event in five and blocking past 100 µs.
func profiling(mux *http.ServeMux) {
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(100_000)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
}
