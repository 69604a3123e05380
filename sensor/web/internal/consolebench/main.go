// Command consolebench measures the server time of the console's
// endpoints page and API on a history made by histbench gen, with every
// generated endpoint live in a real correlator.
//
//	go run ./sensor/history/internal/histbench gen --dir D --endpoints 10000 --days 90
//	go run ./sensor/web/internal/consolebench --dir D --n 1000
package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/access"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/history/synth"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/web"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func main() {
	app := &cli.App{
		Name:  "consolebench",
		Usage: "measure the console's endpoints page and API on a history made by histbench gen",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "state `DIR` made by history-gen"},
			&cli.IntFlag{Name: "n", Value: 300, Usage: "requests of each kind"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			p, st, err := synth.OpenGenerated(dir, history.Options{Logger: quietLogger()})
			if err != nil {
				return err
			}
			defer st.Close()
			// The console's "now" is the end of the last generated day, so
			// its 24-hour views cover that day.
			now := p.End.UTC().Truncate(24 * time.Hour)
			lastDay := uint32(now.Unix()/86400) - 1
			clock := &sensor.ManualClock{T: now.Add(-time.Hour)}
			corr, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: 15 * time.Second}, clock)
			if err != nil {
				return err
			}
			engine := sensor.NewEngine(corr, nil)
			r := rand.New(rand.NewPCG(42, 9))
			for i := 0; i < p.Endpoints; i++ {
				h := schema.HealthGreen
				switch x := r.IntN(100); {
				case x < 3:
					h = schema.HealthRed
				case x < 10:
					h = schema.HealthYellow
				}
				if err := engine.Hello(schema.Hello{EndpointID: synth.EndpointID(i), Name: synth.EndpointName(i), Org: "Bench", Health: h,
					Interfaces: []schema.Interface{{Name: "eth0", MAC: synth.EndpointMAC(i), IPs: []netip.Addr{synth.IPOf(i, lastDay, p.Endpoints)}}},
					Users:      []string{fmt.Sprintf("user%d", i%500)}}); err != nil {
					return err
				}
			}
			work, err := os.MkdirTemp("", "tapbeat-console-bench")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			users := access.Open(work, access.Params{})
			tok, err := users.AddToken("bench", access.RoleViewer, now)
			if err != nil {
				return err
			}
			triage, err := inventory.OpenTriage(filepath.Join(work, inventory.TriageFile))
			if err != nil {
				return err
			}
			srv, err := web.New(web.Options{Live: engine, History: st, Access: users, Triage: triage,
				Now: func() time.Time { return now }, Logger: quietLogger()})
			if err != nil {
				return err
			}
			sorts := []string{"status", "name", "health", "last_heartbeat", "id"}
			kinds := []struct {
				name string
				url  func() string
			}{
				{"endpoints page (50 rows, random sort and page)", func() string {
					return fmt.Sprintf("/endpoints?sort=%s&desc=%d&page=%d", sorts[r.IntN(len(sorts))], r.IntN(2), 1+r.IntN(200))
				}},
				{"GET /api/v1/endpoints (50 rows, random sort and page)", func() string {
					return fmt.Sprintf("/api/v1/endpoints?sort=%s&desc=%d&page=%d", sorts[r.IntN(len(sorts))], r.IntN(2), 1+r.IntN(200))
				}},
				{"endpoints page filtered (q=host-0NNN)", func() string { return fmt.Sprintf("/endpoints?q=host-0%03d", r.IntN(1000)) }},
				{"one endpoint's page (24 h timeline and traffic, 7 days of alerts)", func() string {
					return "/endpoints/" + synth.EndpointID(r.IntN(p.Endpoints))
				}},
				{"GET /api/v1/endpoints/{id}", func() string { return "/api/v1/endpoints/" + synth.EndpointID(r.IntN(p.Endpoints)) }},
			}
			for _, k := range kinds {
				var ds []time.Duration
				for i := -3; i < c.Int("n"); i++ { // three warm-up requests (the vendor table is decoded on first use)
					req := httptest.NewRequest("GET", "https://console"+k.url(), nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					rec := httptest.NewRecorder()
					t0 := time.Now()
					srv.ServeHTTP(rec, req)
					if i >= 0 {
						ds = append(ds, time.Since(t0))
					}
					if rec.Code != http.StatusOK {
						return fmt.Errorf("%s: %d %s", req.URL, rec.Code, rec.Body.String())
					}
				}
				slices.Sort(ds)
				ms := func(q int) float64 { return float64(ds[min(len(ds)*q/100, len(ds)-1)].Microseconds()) / 1000 }
				fmt.Fprintf(c.App.Writer, "%-70s p50 %6.1f ms  p95 %6.1f ms  p99 %6.1f ms  max %6.1f ms\n", k.name,
					ms(50), ms(95), ms(99), ms(100))
			}
			return nil
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "consolebench:", err)
		os.Exit(1)
	}
}
