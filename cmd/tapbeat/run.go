package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone"
	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/sensor"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the sensor: LAN-zone listener and correlator (capture is optional)",
		Description: "Listens on every LAN-zone address of DIR/tapbeat.toml (or on each --listen address),\n" +
			"admits enrolled endpoints, feeds the correlator and prints its events as JSON lines on\n" +
			"standard output. Stops cleanly on SIGINT or SIGTERM.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", Required: true},
			&cli.StringSliceFlag{Name: "listen", Usage: "`HOST:PORT` to listen on instead of the LAN-zone addresses (repeatable)"},
			&cli.DurationFlag{Name: "stats-every", Value: time.Minute, Usage: "log LAN-zone statistics this often (0: never)"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			raiseFileLimit(log)
			dir := c.String("dir")
			lan, err := config.Load(dir)
			if err != nil {
				return err
			}
			corr, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: lan.HeartbeatInterval}, sensor.WallClock{})
			if err != nil {
				return err
			}
			// Events leave the engine's lock through a queue; one writer
			// prints them in sequence order.
			var mu sync.Mutex
			var queue []sensor.Event
			wake := make(chan struct{}, 1)
			var listener *lanzone.Listener
			engine := sensor.NewEngine(corr, func(evs []sensor.Event) {
				mu.Lock()
				queue = append(queue, evs...)
				mu.Unlock()
				select {
				case wake <- struct{}{}:
				default:
				}
				if listener != nil {
					listener.Notify(evs)
				}
			})
			listener, err = lanzone.New(lanzone.Options{Dir: dir, Listen: c.StringSlice("listen"), Correlator: engine, Logger: log})
			if err != nil {
				return err
			}
			if err := listener.Bind(); err != nil {
				return err
			}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				_ = engine.Run(ctx, time.Second)
			}()
			go func() {
				defer wg.Done()
				enc := json.NewEncoder(c.App.Writer)
				for {
					select {
					case <-ctx.Done():
					case <-wake:
					}
					mu.Lock()
					batch := queue
					queue = nil
					mu.Unlock()
					for i := range batch {
						if err := enc.Encode(&batch[i]); err != nil {
							log.Error("write event", "err", err)
						}
					}
					if ctx.Err() != nil {
						return
					}
				}
			}()
			if every := c.Duration("stats-every"); every > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := time.NewTicker(every)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							s := listener.Stats()
							log.Info("LAN zone", "connected", s.Connected, "heartbeats", s.Heartbeats, "handshakes", s.Handshakes,
								"resumed", s.Resumed, "refused", s.Refused, "latency_p50", s.LatencyP50, "latency_p99", s.LatencyP99,
								"latency_max", s.LatencyMax)
						}
					}
				}()
			}
			err = listener.Serve(ctx)
			stop()
			wg.Wait()
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			return nil
		},
	}
}

// raiseFileLimit lifts the open-file limit (every connected endpoint holds
// a socket): to 1,048,576 where allowed (root), else the soft limit to the
// hard one.
func raiseFileLimit(log *slog.Logger) {
	want := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return
	}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			log.Warn("cannot raise the open-file limit", "err", err)
		}
	}
}
