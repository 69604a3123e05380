// Command pcapgen writes a large synthetic Ethernet capture (many stations,
// mixed TCP, UDP and ARP) for benchmarks. Keep its output out of git.
//
//	go run ./capture/internal/synth/pcapgen -o build/synth-4m.pcap -frames 4000000 -macs 5000
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tapbeat/tapbeat/capture/internal/synth"
)

func main() {
	out := flag.String("o", "", "output `FILE` (required)")
	frames := flag.Int("frames", 4_000_000, "number of frames")
	macs := flag.Int("macs", 5000, "number of stations")
	seed := flag.Uint64("seed", 1, "pseudo-random seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "pcapgen: -o FILE is required")
		os.Exit(2)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pcapgen:", err)
		os.Exit(1)
	}
	n, err := synth.Write(f, synth.Config{Frames: *frames, MACs: *macs, Seed: *seed})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pcapgen:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d frames, %d stations\n", *out, n, *macs)
}
