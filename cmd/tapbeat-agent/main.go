// Command tapbeat-agent runs on an endpoint: it proves to the tapbeat sensor
// that the endpoint is alive and healthy, and acts on the sensor's list of
// endpoints at risk.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/cmd/internal/clidoc"
)

// Set at link time by the Makefile.
var (
	version = "dev"
	commit  = "unknown"
)

func newApp() *cli.App {
	return &cli.App{
		Name:                 "tapbeat-agent",
		Usage:                "heartbeat agent for the tapbeat sensor",
		Version:              version + " (commit " + commit + ")",
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			{
				Name:  "version",
				Usage: "print version and commit",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "tapbeat-agent %s (commit %s)\n", version, commit)
					return nil
				},
			},
			runCommand(),
			stoppingCommand(),
			clidoc.Command(),
			// commands: keep one per line
		},
	}
}

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "tapbeat-agent:", err)
		os.Exit(1)
	}
}
