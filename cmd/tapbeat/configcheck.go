package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/daemon"
)

func configCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a configuration file; errors name the bad line",
		ArgsUsage: "[FILE]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR` (checks DIR/tapbeat.toml when no FILE is given)", EnvVars: []string{"TAPBEAT_DIR"}},
		},
		Action: func(c *cli.Context) error {
			path := c.Args().First()
			if path == "" {
				if c.String("dir") == "" {
					return fmt.Errorf("give a FILE or --dir DIR")
				}
				path = filepath.Join(c.String("dir"), "tapbeat.toml")
			}
			cfg, err := daemon.LoadConfig(path)
			if err != nil {
				return err
			}
			if len(cfg.LANZone.Addresses) == 0 {
				fmt.Fprintf(c.App.Writer, "%s: no lanzone.addresses: tapbeat run then needs --listen (or TAPBEAT_LISTEN) to know where agents reach it\n", path)
			}
			fmt.Fprintf(c.App.Writer, "%s: ok (%d LAN-zone addresses, %d capture interfaces, %d policies, %d syslog destinations)\n",
				path, len(cfg.LANZone.Addresses), len(cfg.Capture.Interfaces), len(cfg.Correlation.Policies), len(cfg.Alerts.Syslog))
			return nil
		},
	}
}

func configExampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "example",
		Usage: "print the documented configuration file with every default",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprint(c.App.Writer, daemon.ExampleConfig)
			return err
		},
	}
}
