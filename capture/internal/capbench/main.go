// Command capbench runs live capture on one interface with a sink that only
// counts, until SIGINT or SIGTERM, then prints what it counted and the CPU
// time the process used, as one line of JSON. It is the capture side of
// the live benchmark (capture/internal/synth/bench-live.sh).
//
//	capbench -i IFACE [-workers N] [-fallback] [-gopacket] [-ring-mb 64] [-block-kb 1024] [-block-timeout 50ms] [-period 250ms] [-traffic-period 1s]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapbeat/tapbeat/capture"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

type countSink struct {
	packets, bytes, flows, binds atomic.Uint64
	up                           atomic.Bool
}

func (s *countSink) Traffic(b []schema.TrafficSummary) {
	for _, t := range b {
		s.packets.Add(t.Packets)
		s.bytes.Add(t.Bytes)
	}
}
func (s *countSink) FlowStarts(f []schema.Flow)           { s.flows.Add(uint64(len(f))) }
func (s *countSink) Bindings(b []schema.Binding)          { s.binds.Add(uint64(len(b))) }
func (s *countSink) CaptureHealth(h schema.CaptureHealth) { s.up.Store(h.Up) }

func cpu() (user, sys time.Duration) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func main() {
	iface := flag.String("i", "", "interface to capture (required)")
	workers := flag.Int("workers", 1, "sockets in the fanout group")
	fallback := flag.Bool("fallback", false, "plain sockets instead of a ring")
	ringMB := flag.Int("ring-mb", 64, "ring size in MiB")
	blockKB := flag.Int("block-kb", 0, "ring block size in KiB (0: the default)")
	period := flag.Duration("period", 0, "reporting period of flow starts and bindings (0: the default, 250ms)")
	trafficPeriod := flag.Duration("traffic-period", 0, "reporting period of traffic summaries (0: the default, 1s)")
	gp := flag.Bool("gopacket", false, "read the ring through gopacket's afpacket instead of directly")
	blockTimeout := flag.Duration("block-timeout", 0, "ring block timeout (0: the default)")
	ready := flag.String("ready", "", "create this `FILE` once the interface reports up")
	profile := flag.String("cpuprofile", "", "write a CPU profile to `FILE`")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "capbench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *iface == "" {
		fmt.Fprintln(os.Stderr, "capbench: -i IFACE is required")
		os.Exit(2)
	}
	sink := &countSink{}
	live, err := capture.NewLive(capture.LiveConfig{
		Interfaces: []string{*iface}, Workers: *workers, Fallback: *fallback,
		Ring:    capture.RingConfig{RingBytes: *ringMB << 20, BlockBytes: *blockKB << 10, Gopacket: *gp, BlockTimeout: *blockTimeout},
		Options: capture.Options{Period: *period, TrafficPeriod: *trafficPeriod},
	}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, "capbench:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var readyCPU atomic.Int64 // CPU nanoseconds used when the interface came up
	go func() {
		for !sink.up.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		u, s := cpu()
		readyCPU.Store(int64(u + s))
		if *ready != "" {
			os.WriteFile(*ready, nil, 0o644)
		}
	}()
	start := time.Now()
	if err := live.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "capbench:", err)
		os.Exit(1)
	}
	u, s := cpu()
	st := live.Stats()
	out := map[string]any{
		"packets": sink.packets.Load(), "bytes": sink.bytes.Load(), "flows": sink.flows.Load(),
		"kernel_packets": st.Packets, "kernel_drops": st.Drops, "queue_freezes": st.QueueFreezes,
		"cpu_user_s": u.Seconds(), "cpu_sys_s": s.Seconds(), "wall_s": time.Since(start).Seconds(),
		// CPU used after the interface came up: capture itself, without
		// process start and ring setup.
		"cpu_capture_s": (u + s - time.Duration(readyCPU.Load())).Seconds(),
	}
	json.NewEncoder(os.Stdout).Encode(out)
	stop()
}
