package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/cmd/agent"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "heartbeat to the sensor until stopped",
		Description: "Connects to the first reachable sensor address of the bundle (or of --sensor), sends a\n" +
			"hello and a heartbeat every interval the sensor sets, re-sends the hello when interfaces or\n" +
			"signed-in users change, and keeps the sensor's at-risk list in the state directory.\n" +
			"Health: each --check follows the Nagios plugin convention (exit 0 green, 1 yellow,\n" +
			"2 red, anything else yellow); --signature-file older than --signature-max-age is yellow;\n" +
			"the worst result wins.\n" +
			"Stopping (SIGTERM, SIGINT) sends the sensor a goodbye with the reason: the word in\n" +
			"STATE_DIR/stop-reason if present (an upgrade script writes \"upgrade\"; see `stopping`),\n" +
			"\"shutdown\" while systemd takes the system down, else \"stop\". A killed agent sends none,\n" +
			"and the sensor treats its dropped connection as suspect.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Value: DefaultBundle, Usage: "enrollment bundle `FILE` from `tapbeat enroll`", EnvVars: []string{"TAPBEAT_AGENT_BUNDLE"}},
			&cli.BoolFlag{Name: "wait-for-bundle", Usage: "wait for the bundle file to appear instead of failing when it is missing (the packaged service does)", EnvVars: []string{"TAPBEAT_AGENT_WAIT_FOR_BUNDLE"}},
			&cli.StringSliceFlag{Name: "sensor", Usage: "sensor `HOST:PORT` overriding the bundle's addresses (repeatable; e.g. behind NAT)", EnvVars: []string{"TAPBEAT_AGENT_SENSOR"}},
			&cli.StringSliceFlag{Name: "check", Usage: "health check `CMD` run by /bin/sh (repeatable)"},
			&cli.StringFlag{Name: "check-dir", Usage: "`DIR` whose executable files are each a health check", EnvVars: []string{"TAPBEAT_AGENT_CHECK_DIR"}},
			&cli.DurationFlag{Name: "check-timeout", Value: 10 * time.Second, Usage: "timeout of each check", EnvVars: []string{"TAPBEAT_AGENT_CHECK_TIMEOUT"}},
			&cli.StringFlag{Name: "signature-file", Usage: "`PATH` whose age is the signature age", EnvVars: []string{"TAPBEAT_AGENT_SIGNATURE_FILE"}},
			&cli.DurationFlag{Name: "signature-max-age", Value: 24 * time.Hour, Usage: "signature age that makes the endpoint yellow", EnvVars: []string{"TAPBEAT_AGENT_SIGNATURE_MAX_AGE"}},
			&cli.StringFlag{Name: "state-dir", Value: "/var/lib/tapbeat-agent", Usage: "`DIR` for the at-risk list and the sensor addresses", EnvVars: []string{"TAPBEAT_AGENT_STATE_DIR"}},
			&cli.StringFlag{Name: "on-at-risk", Usage: "`CMD` run by /bin/sh when the at-risk list changes (TAPBEAT_AT_RISK_FILE names it)", EnvVars: []string{"TAPBEAT_AGENT_ON_AT_RISK"}},
			&cli.BoolFlag{Name: "isolate", Usage: "drop traffic from red and missing endpoints with nftables (Linux, root)", EnvVars: []string{"TAPBEAT_AGENT_ISOLATE"}},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			if c.Bool("wait-for-bundle") {
				if err := waitForBundle(ctx, c.String("bundle"), 2*time.Second, logger); err != nil {
					return err
				}
			}
			b, err := pki.ReadBundle(c.String("bundle"))
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: give --bundle FILE from `tapbeat enroll`, or copy it to %s (--wait-for-bundle waits for it)", err, DefaultBundle)
			}
			if err != nil {
				return err
			}
			checks := c.StringSlice("check")
			if d := c.String("check-dir"); d != "" {
				more, err := checksIn(d)
				if err != nil {
					return err
				}
				checks = append(checks, more...)
			}
			a, err := agent.New(agent.Config{
				Bundle:          b,
				Sensors:         c.StringSlice("sensor"),
				Checks:          checks,
				CheckTimeout:    c.Duration("check-timeout"),
				SignatureFile:   c.String("signature-file"),
				SignatureMaxAge: c.Duration("signature-max-age"),
				StateDir:        c.String("state-dir"),
				OnAtRisk:        c.String("on-at-risk"),
				Isolate:         c.Bool("isolate"),
				Logger:          logger,
				Version:         version,
				StopReason:      func() schema.GoodbyeReason { return agent.StopReason(c.String("state-dir")) },
			})
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
}

func stoppingCommand() *cli.Command {
	return &cli.Command{
		Name:  "stopping",
		Usage: "record why the agent is about to be stopped, for its goodbye to the sensor",
		Description: "Writes REASON to STATE_DIR/stop-reason; the running agent reads it when it stops and\n" +
			"tells the sensor. Package scripts run `tapbeat-agent stopping --reason upgrade` before\n" +
			"restarting the service.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Usage: "`REASON`: upgrade, shutdown or stop", Required: true},
			&cli.StringFlag{Name: "state-dir", Value: "/var/lib/tapbeat-agent", Usage: "the agent's state `DIR`"},
		},
		Action: func(c *cli.Context) error {
			return agent.WriteStopReason(c.String("state-dir"), schema.GoodbyeReason(c.String("reason")))
		},
	}
}
