package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/daemon"
)

func daemonRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the sensor: capture, LAN zone, correlation, history, alerts",
		Description: "Runs the sensor until SIGTERM or SIGINT (graceful: every event is stored, the outbox kept).\n" +
			"SIGHUP reloads policies, infrastructure MACs and syslog destinations from the configuration\n" +
			"file; the trust store and LAN-zone addresses are picked up on their own.\n" +
			"Settings come from DIR/tapbeat.toml (or --config), then TAPBEAT_* variables, then flags.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "state `DIR`: config, PKI, history", EnvVars: []string{"TAPBEAT_DIR"}, Required: true},
			&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default DIR/tapbeat.toml)", EnvVars: []string{"TAPBEAT_CONFIG"}},
			&cli.StringSliceFlag{Name: "capture", Usage: "mirror-port `IFACE` to capture on (repeatable)", EnvVars: []string{"TAPBEAT_CAPTURE"}},
			&cli.StringSliceFlag{Name: "listen", Usage: "LAN-zone `HOST:PORT` (repeatable; default the LAN-zone addresses on 8347)", EnvVars: []string{"TAPBEAT_LISTEN"}},
			&cli.StringSliceFlag{Name: "syslog", Usage: "syslog destination `URL`: udp://, tcp://, tls://, relp:// or relp+tls:// with ?format=&min_severity=... (repeatable)", EnvVars: []string{"TAPBEAT_SYSLOG"}},
			&cli.DurationFlag{Name: "heartbeat-interval", Usage: "heartbeat interval agents are told to use (default 15s)", EnvVars: []string{"TAPBEAT_HEARTBEAT_INTERVAL"}},
			&cli.IntFlag{Name: "missing-after", Usage: "missed intervals before missing (default 3)", EnvVars: []string{"TAPBEAT_MISSING_AFTER"}},
			&cli.StringFlag{Name: "api", Usage: "local API Unix `SOCKET` (default DIR/tapbeat.sock)", EnvVars: []string{"TAPBEAT_API"}},
			&cli.StringFlag{Name: "admin-listen", Usage: "mutual-TLS admin API `HOST:PORT` on the management address", EnvVars: []string{"TAPBEAT_ADMIN_LISTEN"}},
			&cli.StringFlag{Name: "metrics", Usage: "Prometheus /metrics and /healthz `HOST:PORT`", EnvVars: []string{"TAPBEAT_METRICS"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json", EnvVars: []string{"TAPBEAT_LOG_FORMAT"}},
		},
		Action: func(c *cli.Context) error {
			if err := validateRunFlags(c); err != nil {
				return err
			}
			dir := c.String("dir")
			log := newLogger(c.App.ErrWriter, c.String("log-format"))
			path := c.String("config")
			if path == "" {
				path = filepath.Join(dir, "tapbeat.toml")
			}
			cfg, err := daemon.LoadConfig(path)
			if errors.Is(err, os.ErrNotExist) && !c.IsSet("config") {
				return fmt.Errorf("no configuration at %s: run `tapbeat init --dir %s --org NAME --lan ADDR` first", path, dir)
			}
			if err != nil {
				return err
			}
			override := func(cfg *daemon.Config) {
				if c.IsSet("capture") {
					cfg.Capture.Interfaces = c.StringSlice("capture")
				}
				if c.IsSet("syslog") {
					cfg.Alerts.Syslog = c.StringSlice("syslog")
				}
				if c.IsSet("heartbeat-interval") {
					cfg.LANZone.HeartbeatInterval = c.Duration("heartbeat-interval")
				}
				if c.IsSet("missing-after") {
					cfg.Correlation.MissingAfter = c.Int("missing-after")
				}
				if c.IsSet("api") {
					cfg.API.Socket = c.String("api")
				}
				if c.IsSet("admin-listen") {
					cfg.API.AdminListen = c.String("admin-listen")
				}
				if c.IsSet("metrics") {
					cfg.Metrics.Listen = c.String("metrics")
				}
			}
			override(&cfg)
			if err := cfg.Validate(); err != nil {
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
				Dir: dir, Config: cfg, ConfigPath: path, Listen: c.StringSlice("listen"),
				Logger: log, Version: version, Reload: reload, Override: override,
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

// validateRunFlags refuses flag values that make no sense, where the
// configuration file's zero ("take the default") cannot apply: a flag set
// to zero or less is a mistake, not a request for the default.
func validateRunFlags(c *cli.Context) error {
	var errs []error
	if c.IsSet("heartbeat-interval") && c.Duration("heartbeat-interval") <= 0 {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %v: want a positive duration between 1s and 1h, such as 15s", c.Duration("heartbeat-interval")))
	}
	if c.IsSet("missing-after") && c.Int("missing-after") <= 0 {
		errs = append(errs, fmt.Errorf("--missing-after %d: want 1 or more missed intervals (default 3)", c.Int("missing-after")))
	}
	return errors.Join(errs...)
}
