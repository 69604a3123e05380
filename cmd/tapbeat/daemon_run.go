package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/daemon"
)

func daemonRunCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "dir", Usage: "state `DIR`: config, PKI, history", EnvVars: []string{"TAPBEAT_DIR"}, Required: true},
		&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default DIR/tapbeat.toml)", EnvVars: []string{"TAPBEAT_CONFIG"}},
	}
	settings := daemon.Settings()
	for _, st := range settings {
		usage := fmt.Sprintf("%s [$%s]", st.Usage, st.Env)
		if st.List {
			flags = append(flags, &cli.StringSliceFlag{Name: st.Flag, Usage: "`" + st.Placeholder + "`: " + usage})
		} else {
			flags = append(flags, &cli.StringFlag{Name: st.Flag, Usage: "`" + st.Placeholder + "`: " + usage})
		}
	}
	flags = append(flags, &cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json", EnvVars: []string{"TAPBEAT_LOG_FORMAT"}})
	return &cli.Command{
		Name:  "run",
		Usage: "run the sensor: capture, LAN zone, correlation, history, alerts",
		Description: "Runs the sensor until SIGTERM or SIGINT (graceful: every event is stored, the outbox kept).\n" +
			"The configuration is resolved once: flags over TAPBEAT_* variables over the file (DIR/tapbeat.toml\n" +
			"or --config) over defaults, every value checked. When the file changes (tapbeat config set, an\n" +
			"edit) or on SIGHUP it is resolved again the same way and applied to every part together;\n" +
			"the trust store is picked up on its own.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			log := newLogger(c.App.ErrWriter, c.String("log-format"))
			src := daemon.Sources{Dir: dir, Path: c.String("config"), Flags: map[string][]string{}, Env: os.LookupEnv}
			for _, st := range settings {
				if !c.IsSet(st.Flag) {
					continue
				}
				if st.List {
					src.Flags[st.Flag] = c.StringSlice(st.Flag)
				} else {
					src.Flags[st.Flag] = []string{c.String(st.Flag)}
				}
			}
			resolve := func() (daemon.Resolved, error) { return daemon.Resolve(src) }
			cfg, err := resolve()
			if err != nil {
				return fmt.Errorf("configuration: %w", err)
			}
			raiseFileLimit(log)
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{}, 1)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			return daemon.Run(ctx, daemon.Options{
				Dir: dir, Config: cfg, Resolve: resolve,
				Logger: log, Version: version, Reload: reload,
			})
		},
	}
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
