// Command fleetsim runs many simulated endpoints from one process against a
// running sensor: test tooling for load tests, kept out of the agent that
// ships to every endpoint.
//
//	go run ./lanzone/internal/fleetsim --dir /var/lib/tapbeat --count 1000
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/cmd/agent"
)

func main() {
	app := simulateCommand()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func simulateCommand() *cli.App {
	return &cli.App{
		Name:  "fleetsim",
		Usage: "run many simulated endpoints from one process (load tests)",
		Description: "Enrolls --count endpoints in the sensor directory in one bulk call (names PREFIX-N; an\n" +
			"existing enrollment of that prefix is reused from --cache), then connects each from its\n" +
			"own 127.0.0.0/8 source address and heartbeats at the interval the sensor sets, each\n" +
			"heartbeat carrying its send time so the sensor measures latency. Prints progress every\n" +
			"--report interval.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR` (enrollment authority)", Required: true},
			&cli.IntFlag{Name: "count", Value: 1000, Usage: "number of endpoints"},
			&cli.StringFlag{Name: "sensor", Value: "127.0.0.1:8347", Usage: "sensor `HOST:PORT`"},
			&cli.StringFlag{Name: "prefix", Value: "sim", Usage: "endpoint name prefix"},
			&cli.StringFlag{Name: "cache", Usage: "`FILE` to keep the simulated bundles in (default DIR/../PREFIX-bundles.json)"},
			&cli.DurationFlag{Name: "ramp", Value: 30 * time.Second, Usage: "spread the first connections over this long"},
			&cli.DurationFlag{Name: "report", Value: 5 * time.Second, Usage: "progress report interval"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (0: until interrupted)"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Simulate(ctx, agent.SimConfig{
				Dir: c.String("dir"), Count: c.Int("count"), Sensor: c.String("sensor"), Prefix: c.String("prefix"),
				Cache: c.String("cache"), Ramp: c.Duration("ramp"), Report: c.Duration("report"), Duration: c.Duration("duration"),
				Out: c.App.Writer, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
			})
		},
	}
}
