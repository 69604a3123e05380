// Command tapbeat is the Security Heartbeat sensor: the daemon that watches
// a mirror port and the LAN zone, the enrollment authority, and the forensic
// CLI over its history.
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
		Name:                 "tapbeat",
		Usage:                "Security Heartbeat sensor for a switch's mirror port",
		Version:              version + " (commit " + commit + ")",
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			versionCommand(),
			replayCommand(),
			labCommand(),
			configCommand(),
			endpointsCommand(),
			enrollCommand(),
			eventTypesCommand(),
			initCommand(),
			revokeCommand(),
			daemonRunCommand(),
			demoCommand(),
			backupCommand(),
			queryCommand(),
			restoreCommand(),
			alertTestCommand(),
			clidoc.Command(),
			enrollCodeCommand(),
			userCommand(),
			tokenCommand(),
			fleetCommand(),
			// commands: keep one per line, alphabetical after version
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print version and commit",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "tapbeat %s (commit %s)\n", version, commit)
			return nil
		},
	}
}

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "tapbeat:", err)
		os.Exit(1)
	}
}
