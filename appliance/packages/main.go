// Command packages builds the .deb and .rpm packages of the sensor
// (tapbeat) and the endpoint agent (tapbeat-agent) with nfpm, from the
// static binaries `make build` leaves in bin/: `make packages` runs it from
// the repository's root.
//
// What goes into each package is in tapbeat.yaml and tapbeat-agent.yaml
// (nfpm's own format); the unit files, default settings and maintainer
// scripts sit beside them. The manual pages and shell completions are
// generated here from the binaries' command-line definitions, so they
// always describe the flags the packaged binary accepts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	var o options
	flag.StringVar(&o.Bin, "bin", "bin", "`DIR` holding the static tapbeat and tapbeat-agent binaries")
	flag.StringVar(&o.Out, "out", "build/packages", "`DIR` the packages are written to")
	flag.StringVar(&o.Version, "version", "", "package `VERSION` (default: derived from git describe)")
	flag.StringVar(&o.Maintainer, "maintainer", DefaultMaintainer, "the packages' Maintainer field, `NAME <EMAIL>`")
	printVersion := flag.Bool("print-version", false, "print the version the packages would get from git, and build nothing")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *printVersion {
		v, err := gitVersion(ctx, ".")
		if err != nil {
			fmt.Fprintln(os.Stderr, "packages:", err)
			os.Exit(1)
		}
		fmt.Println(v)
		return
	}
	built, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packages:", err)
		os.Exit(1)
	}
	for _, p := range built {
		fmt.Println(p)
	}
}
