// Command histbench writes a synthetic history and measures queries on it:
// test tooling for the history benchmarks in BENCHMARKS.md, kept out of the
// product binaries.
//
//	go run ./sensor/history/internal/histbench gen --dir D --endpoints 10000 --days 90
//	go run ./sensor/history/internal/histbench query --dir D --cli bin/tapbeat
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/history/synth"
)

func main() {
	app := &cli.App{
		Name:     "histbench",
		Usage:    "synthetic history and query latency for the history benchmarks",
		Commands: []*cli.Command{historyGenCommand(), historyBenchCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "histbench:", err)
		os.Exit(1)
	}
}

// historyGenCommand is "histbench gen": synthetic history for benchmarks.
func historyGenCommand() *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "write synthetic history into DIR/history",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "state `DIR` to create (history in DIR/history)"},
			&cli.IntFlag{Name: "endpoints", Value: 10000, Usage: "number of endpoints"},
			&cli.IntFlag{Name: "days", Value: 90, Usage: "days of history, ending today"},
			&cli.IntFlag{Name: "traffic-minutes", Value: 10, Usage: "per-minute traffic rows per endpoint per day"},
			&cli.IntFlag{Name: "unmanaged", Value: 20, Usage: "new unmanaged devices per day"},
			&cli.Uint64Flag{Name: "seed", Value: 1},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			hdir := synth.HistoryDir(dir)
			if _, err := os.Stat(filepath.Join(hdir, "MANIFEST")); err == nil {
				return fmt.Errorf("%s already holds a history: give a new --dir", hdir)
			}
			p := synth.Params{Endpoints: c.Int("endpoints"), Days: c.Int("days"), End: time.Now().UTC(), Seed: c.Uint64("seed"),
				TrafficMinutes: c.Int("traffic-minutes"), UnmanagedPerDay: c.Int("unmanaged")}
			st, err := history.Open(hdir, history.Options{Logger: quietLogger()})
			if err != nil {
				return err
			}
			cfg := p.Config()
			cfg.Progress = func(day int, s synth.Stats) {
				if day%10 == 0 || day == p.Days {
					fmt.Fprintf(c.App.ErrWriter, "day %d/%d: %d events, %d bindings, %d traffic rows, %s\n", day, p.Days, s.Events, s.Bindings, s.TrafficRows, s.Elapsed.Round(time.Second))
				}
			}
			sctx, stopSampling := context.WithCancel(c.Context)
			peaks := sampleRSS(sctx, 250*time.Millisecond)
			stats, err := synth.Generate(c.Context, st, cfg)
			stopSampling()
			peak := <-peaks
			if cerr := st.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := synth.WriteParams(dir, p); err != nil {
				return err
			}
			disk := diskUsage(hdir)
			out := map[string]any{
				"params": p, "stats": stats,
				"events_per_second":                  float64(stats.Events) / stats.AppendTime.Seconds(),
				"disk_bytes":                         disk,
				"disk_bytes_per_endpoint_day":        float64(disk) / float64(p.Endpoints*p.Days),
				"peak_rss_bytes":                     peakRSS(),
				"peak_rss_anon_bytes":                peak.anon,
				"peak_rss_file_bytes":                peak.file,
				"note_rss":                           "peak_rss is VmHWM; anon is heap and Badger buffers, file is mmapped tables (reclaimable page cache), sampled every 250 ms",
				"wall_events_per_second_all_inputs":  float64(stats.Events) / stats.Elapsed.Seconds(),
				"wall_seconds":                       stats.Elapsed.Seconds(),
				"note_events_per_second":             "events / time spent inside Append (indexes, state, fsync)",
				"note_wall_events_per_second_inputs": "events / whole run, bindings and traffic included",
			}
			return queryJSON(c.App.Writer, out)
		},
	}
}

// diskUsage returns the bytes allocated to files under dir.
func diskUsage(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

type rssPeaks struct{ anon, file int64 }

// sampleRSS samples the process's anonymous and file-backed resident
// memory until ctx ends, then sends the peaks.
func sampleRSS(ctx context.Context, every time.Duration) <-chan rssPeaks {
	out := make(chan rssPeaks, 1)
	go func() {
		var p rssPeaks
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			a, f := procStatus("RssAnon:"), procStatus("RssFile:")
			p.anon, p.file = max(p.anon, a), max(p.file, f)
			select {
			case <-ctx.Done():
				out <- p
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// procStatus returns a "kB" field of /proc/self/status in bytes, -1 if absent.
func procStatus(field string) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// peakRSS returns the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 { return procStatus("VmHWM:") }

type latency struct {
	Count   int     `json:"count"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
	Invalid int     `json:"wrong_answers,omitempty"`
}

func summarize(ds []time.Duration) latency {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if len(ds) == 0 {
		return latency{}
	}
	return latency{Count: len(ds), P50ms: ms(ds[len(ds)/2]), P99ms: ms(ds[(len(ds)*99)/100]), MaxMS: ms(ds[len(ds)-1])}
}

// historyBenchCommand is "histbench query": query latency on a generated
// history, in process and through the CLI and the socket.
func historyBenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "query",
		Usage: "measure who/history latency on a history made by histbench gen",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "state `DIR` made by histbench gen"},
			&cli.IntFlag{Name: "n", Value: 2000, Usage: "in-process queries of each kind"},
			&cli.IntFlag{Name: "cli-n", Value: 200, Usage: "CLI calls of each kind through the socket (0: skip)"},
			&cli.StringFlag{Name: "cli", Value: "bin/tapbeat", Usage: "tapbeat `BINARY` to run"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			p, st, err := synth.OpenGenerated(dir, history.Options{Logger: quietLogger()})
			if err != nil {
				return err
			}
			defer st.Close()
			r := rand.New(rand.NewPCG(42, 7))
			lastDay := uint32(p.End.Unix()/86400) - 1 // gen writes whole days before End's
			pick := func() (int, uint32, time.Time) {
				i := r.IntN(p.Endpoints)
				d := lastDay - uint32(r.IntN(p.Days))
				arrive, leave := synth.Presence(p.Seed, i, d)
				t := arrive.Add(time.Minute + time.Duration(r.Int64N(int64(leave.Sub(arrive)-2*time.Minute))))
				return i, d, t
			}
			n := c.Int("n")
			var ref, who, hist []time.Duration
			wrong, empty := 0, 0
			for k := 0; k < n; k++ {
				i, d, t := pick()
				ip := synth.IPOf(i, d, p.Endpoints)
				t0 := time.Now()
				ans, err := st.Who(ip, t)
				who = append(who, time.Since(t0))
				if err != nil {
					return err
				}
				if ans.MAC == nil || *ans.MAC != synth.EndpointMAC(i) || ans.Endpoint == nil || ans.Endpoint.EndpointID != synth.EndpointID(i) {
					wrong++
				}
				t0 = time.Now()
				evs, err := st.History(history.HistoryQuery{Range: history.Range{Since: t.Add(-7 * 24 * time.Hour), Until: t}, Endpoint: synth.EndpointName(i)})
				hist = append(hist, time.Since(t0))
				if err != nil {
					return err
				}
				if len(evs) == 0 {
					empty++
				}
				// Reference: a one-minute traffic read, a single index seek.
				t0 = time.Now()
				_, _ = st.Traffic(history.TrafficQuery{Range: history.Range{Since: t, Until: t}, MAC: synth.EndpointMAC(i)})
				ref = append(ref, time.Since(t0))
			}
			res := map[string]any{"params": p}
			w, h, rf := summarize(who), summarize(hist), summarize(ref)
			w.Invalid, h.Invalid = wrong, empty
			res["inprocess_who"], res["inprocess_history_7d"], res["inprocess_reference_single_seek"] = w, h, rf
			res["ratio_who_p99_to_reference_p99"] = w.P99ms / max(rf.P99ms, 0.001)
			res["ratio_history_p99_to_reference_p99"] = h.P99ms / max(rf.P99ms, 0.001)

			if cn := c.Int("cli-n"); cn > 0 {
				bin := c.String("cli")
				sock := filepath.Join(dir, "bench.sock")
				srv := api.NewServer(st, nil, quietLogger())
				ctx, cancel := context.WithCancel(c.Context)
				done := make(chan error, 1)
				go func() { done <- srv.ServeUnix(ctx, sock) }()
				defer func() { cancel(); <-done }()
				time.Sleep(200 * time.Millisecond)
				run := func(args ...string) (time.Duration, error) {
					t0 := time.Now()
					out, err := exec.CommandContext(c.Context, bin, args...).CombinedOutput()
					if err != nil {
						return 0, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, out)
					}
					return time.Since(t0), nil
				}
				var cw, ch, cref []time.Duration
				for k := 0; k < cn; k++ {
					i, d, t := pick()
					ip := synth.IPOf(i, d, p.Endpoints)
					dt, err := run("query", "who", "--api", sock, "--ip", ip.String(), "--at", t.Format(time.RFC3339), "--format", "json")
					if err != nil {
						return err
					}
					cw = append(cw, dt)
					dt, err = run("query", "history", "--api", sock, "--endpoint", synth.EndpointName(i), "--since", t.Add(-7*24*time.Hour).Format(time.RFC3339), "--until", t.Format(time.RFC3339), "--format", "json")
					if err != nil {
						return err
					}
					ch = append(ch, dt)
					dt, err = run("version")
					if err != nil {
						return err
					}
					cref = append(cref, dt)
				}
				a, b, rr := summarize(cw), summarize(ch), summarize(cref)
				res["cli_socket_who"], res["cli_socket_history_7d"], res["cli_reference_version"] = a, b, rr
				res["ratio_cli_who_p99_to_version_p99"] = a.P99ms / max(rr.P99ms, 0.001)
				res["ratio_cli_history_p99_to_version_p99"] = b.P99ms / max(rr.P99ms, 0.001)
			}
			return queryJSON(c.App.Writer, res)
		},
	}
}

func queryJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// quietLogger reports only errors, on standard error.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
