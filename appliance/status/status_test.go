package status

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/appliance/supervise"
)

const metricsText = `# HELP tapbeat_endpoints Enrolled endpoints by status.
# TYPE tapbeat_endpoints gauge
tapbeat_endpoints{status="green"} 7
tapbeat_endpoints{status="missing"} 1
tapbeat_endpoints{status="red"} 2
# TYPE tapbeat_unmanaged_macs gauge
tapbeat_unmanaged_macs 3
# TYPE tapbeat_events_total counter
tapbeat_events_total{severity="warning",type="heartbeat_missing"} 4
tapbeat_events_total{severity="notice",type="no_heartbeat"} 6
tapbeat_events_total{severity="info",type="status_changed"} 30
# TYPE go_goroutines gauge
go_goroutines 12
`

func TestParseMetrics(t *testing.T) {
	s, total, err := ParseMetrics(metricsText)
	if err != nil {
		t.Fatal(err)
	}
	if s.Endpoints["green"] != 7 || s.Endpoints["missing"] != 1 || s.Endpoints["red"] != 2 || s.Unmanaged != 3 || !s.UnmanagedKnown || total != 10 {
		t.Errorf("got %+v total %d", s, total)
	}
	if _, _, err := ParseMetrics("tapbeat_endpoints{status=\"green\" 7\n"); err == nil {
		t.Error("broken exposition accepted")
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, metricsText)
	}))
	defer srv.Close()
	s, total, err := Scrape(context.Background(), srv.URL+"/metrics")
	if err != nil || s.Unmanaged != 3 || total != 10 {
		t.Fatalf("Scrape = %+v %d %v", s, total, err)
	}
	if _, _, err := Scrape(context.Background(), srv.URL+"/nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404 not reported: %v", err)
	}
}

func TestAlertWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var w AlertWindow
	if got := w.Add(t0, 100); got != 0 {
		t.Errorf("first sample = %d", got)
	}
	w.Add(t0.Add(10*time.Minute), 105)
	if got := w.Add(t0.Add(20*time.Minute), 107); got != 7 {
		t.Errorf("after 20 min = %d, want 7", got)
	}
	// The daemon restarted: its counter began again at 2.
	if got := w.Add(t0.Add(30*time.Minute), 2); got != 9 {
		t.Errorf("after a restart = %d, want 9", got)
	}
	// 75 minutes in, the samples before the last hour have dropped out:
	// only 107->2 (a restart, +2) and 2->3 remain.
	if got := w.Add(t0.Add(75*time.Minute), 3); got != 3 {
		t.Errorf("after 75 min = %d, want 3", got)
	}
}

func TestNICCountersAndRates(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "eth1", "statistics")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	set := func(rx, tx string) {
		for f, v := range map[string]string{"rx_packets": rx, "rx_dropped": "0", "tx_packets": tx} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sys, "eth1", "operstate"), []byte("up\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var r Rates
	t0 := time.Now()
	set("1000", "0")
	n := NIC{Name: "eth1", Role: "capture"}
	if err := NICCounters(sys, &n); err != nil || n.RxPackets != 1000 || !n.Up {
		t.Fatalf("%+v %v", n, err)
	}
	r.Update(t0, &n)
	set("6000", "0")
	if err := NICCounters(sys, &n); err != nil {
		t.Fatal(err)
	}
	r.Update(t0.Add(5*time.Second), &n)
	if n.RxRate != 1000 {
		t.Errorf("rate = %v, want 1000", n.RxRate)
	}
	if err := NICCounters(sys, &NIC{Name: "eth9"}); err == nil {
		t.Error("missing NIC accepted")
	}
}

func TestRender(t *testing.T) {
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := Render(&b, Snapshot{
		Time: now, Hostname: "tb1", Version: "v1", Uptime: 90 * time.Second,
		Notices: []string{"First boot: read ISO.md"},
		NICs: []NIC{
			{Role: "mgmt", Name: "eth0", MAC: "52:54:00:00:00:01", Address: "10.0.2.15/24", Up: true},
			{Role: "capture", Name: "eth1", MAC: "52:54:00:00:00:02", Up: true, RxPackets: 500, RxRate: 42},
		},
		Daemon: supervise.State{Running: true, Ready: true, PID: 99, Starts: 1, Since: now.Add(-time.Minute)},
		Sensor: &Sensor{Endpoints: map[string]int{"green": 3, "missing": 1}, Unmanaged: 2, UnmanagedKnown: true, Alerts1h: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"host tb1", "First boot: read ISO.md", "mgmt     eth0", "10.0.2.15/24", "42 fps", "tx 0",
		"sensor   ready (pid 99, up 1m0s", "endpoints 4: green 3, missing 1", "unmanaged MACs 2", "alerts in the last hour 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("screen lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 80 {
			t.Errorf("line wider than the console (%d): %q", len(l), l)
		}
	}
	b.Reset()
	_ = Render(&b, Snapshot{Time: now, Daemon: supervise.State{Starts: 3, LastExit: "exit status 1"}})
	if !strings.Contains(b.String(), "sensor   DOWN: exit status 1") {
		t.Errorf("down state not shown:\n%s", b.String())
	}
}
