package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

var (
	qt0   = time.Date(2026, 11, 17, 8, 0, 0, 0, time.UTC)
	qMacA = schema.MustParseMAC("02:00:00:00:00:0a")
	qMacB = schema.MustParseMAC("02:00:00:00:00:0b")
	qIP   = netip.MustParseAddr("10.9.0.5")
)

// writeHistory puts a small history in dir/history: laptop-a (alice) holds
// 10.9.0.5 from 08:00 and goes yellow at 10:00; from 12:00 unmanaged
// camera-1 (qMacB) holds the address. It returns the store still open when
// keepOpen is set.
func writeHistory(t *testing.T, dir string, keepOpen bool) *history.Store {
	t.Helper()
	s, err := history.Open(filepath.Join(dir, "history"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &sensor.ManualClock{T: qt0}
	c, _ := sensor.NewCorrelator(sensor.Config{}, clock)
	store := func(evs []schema.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 {
			if err := s.Append(evs, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	store(c.Hello(schema.Hello{EndpointID: "ep-a", Name: "laptop-a", Org: "acme", Health: schema.HealthGreen, Users: []string{"alice"},
		Interfaces: []schema.Interface{{Name: "eth0", MAC: qMacA, IPs: []netip.Addr{qIP}}}}))
	clock.Set(qt0.Add(2 * time.Hour))
	store(c.Heartbeat(schema.Heartbeat{EndpointID: "ep-a", Health: schema.HealthYellow, Reasons: []string{"firewall off"}}))
	clock.Set(qt0.Add(4 * time.Hour))
	if err := s.AddBindings([]schema.Binding{{MAC: qMacB, IP: qIP, Source: "dhcp", Hostname: "camera-1", Time: clock.T}}); err != nil {
		t.Fatal(err)
	}
	ts := []schema.TrafficSummary{{MAC: qMacB, IPs: []netip.Addr{qIP}, Packets: 3, Bytes: 300, FirstSeen: clock.T, LastSeen: clock.T.Add(10 * time.Second)}}
	store(c.Traffic(ts), nil)
	if err := s.AddTraffic(ts); err != nil {
		t.Fatal(err)
	}
	store(c.Heartbeat(schema.Heartbeat{EndpointID: "ep-a", Health: schema.HealthYellow, Reasons: []string{"firewall off"}}))
	clock.Set(qt0.Add(4*time.Hour + 30*time.Second))
	store(c.Tick(), nil)
	if keepOpen {
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return nil
}

func checkWidth(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("line of %d columns (max 100): %q", n, line)
		}
	}
}

func TestQueryOnDatabase(t *testing.T) {
	dir := t.TempDir()
	writeHistory(t, dir, false)
	base := []string{"--dir", dir, "--tz", "UTC"}
	run := func(args ...string) string {
		t.Helper()
		out, err := runApp(t, append(args[:2:2], append(base, args[2:]...)...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}

	out := run("query", "who", "--ip", "10.9.0.5", "--at", "2026-11-17 09:00")
	for _, want := range []string{"02:00:00:00:00:0a", "laptop-a", "green since 2026-11-17 08:00:00", "alice"} {
		if !strings.Contains(out, want) {
			t.Errorf("who at 09:00 lacks %q:\n%s", want, out)
		}
	}
	checkWidth(t, out)
	// 13:00 in Paris is 12:00 UTC: camera-1. The same instant in RFC 3339.
	for _, at := range [][]string{{"--at", "2026-11-17 13:00", "--tz", "Europe/Paris"}, {"--at", "2026-11-17T07:00:00-05:00"}} {
		out = run(append([]string{"query", "who", "--ip", "10.9.0.5", "--format", "json"}, at...)...)
		var ans history.WhoAnswer
		if err := json.Unmarshal([]byte(out), &ans); err != nil {
			t.Fatalf("who json: %v\n%s", err, out)
		}
		if ans.MAC == nil || *ans.MAC != qMacB || ans.Unmanaged == nil || ans.Unmanaged.Hostnames[0] != "camera-1" {
			t.Errorf("who %v: %+v, want camera-1", at, ans)
		}
	}

	out = run("query", "history", "--endpoint", "laptop-a", "--since", "2026-11-17", "--until", "2026-11-18", "--format", "json")
	var evs []schema.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("history json: %v\n%s", err, out)
	}
	if len(evs) < 3 || evs[0].Type != schema.EventEndpointHello || evs[len(evs)-1].Status != schema.StatusYellow {
		t.Errorf("history of laptop-a: %+v", evs)
	}
	out = run("query", "history", "--mac", "02:00:00:00:00:0a", "--since", "2026-11-17", "--until", "2026-11-18")
	if !strings.Contains(out, "green>yellow") || !strings.Contains(out, "reported health yellow") {
		t.Errorf("history table by MAC:\n%s", out)
	}
	checkWidth(t, out)

	out = run("query", "alerts", "--since", "2026-11-17", "--until", "2026-11-18", "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("alerts csv: %v\n%s", err, out)
	}
	if len(rows) != 3 || rows[0][2] != "type" || rows[1][2] != "status_changed" || rows[2][2] != "no_heartbeat" {
		t.Errorf("alerts csv rows %v", rows)
	}
	out = run("query", "alerts", "--since", "2026-11-17", "--until", "2026-11-18", "--type", "no_heartbeat")
	if !strings.Contains(out, "02:00:00:00:00:0b") || strings.Contains(out, "laptop-a") {
		t.Errorf("alerts --type no_heartbeat:\n%s", out)
	}

	out = run("query", "traffic", "--mac", "02:00:00:00:00:0b", "--since", "2026-11-17 12:00", "--until", "2026-11-17 12:10")
	if !strings.Contains(out, "2026-11-17 12:00") || !strings.Contains(out, "3            300") {
		t.Errorf("traffic:\n%s", out)
	}
	out = run("query", "unmanaged", "--since", "2026-11-17", "--until", "2026-11-18")
	if !strings.Contains(out, "02:00:00:00:00:0b") || !strings.Contains(out, "camera-1") || !strings.Contains(out, "10.9.0.5") {
		t.Errorf("unmanaged:\n%s", out)
	}
	checkWidth(t, out)
	out = run("query", "endpoints", "--format", "json")
	var l api.EndpointList
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.Source != api.SourceHistory || len(l.Endpoints) != 1 || l.Endpoints[0].Status != schema.StatusYellow {
		t.Errorf("endpoints: %v %+v", err, l)
	}
}

func TestQueryErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "endpoints", "--dir", dir}, "no history database"},
		{[]string{"query", "who", "--dir", dir, "--ip", "10.0.0.1", "--at", "last tuesday"}, "--at: time \"last tuesday\""},
		{[]string{"query", "alerts", "--dir", dir, "--format", "xml"}, "--format \"xml\""},
		{[]string{"query", "alerts", "--dir", dir, "--since", "1h", "--until", "2h"}, "is after --until"},
		{[]string{"query", "history", "--dir", dir, "--mac", "zz"}, ""},
		{[]string{"query", "endpoints", "--dir", dir, "--api", filepath.Join(dir, "nope.sock")}, "no daemon socket"},
		{[]string{"query", "endpoints", "--server", "https://127.0.0.1:1"}, "--server needs --bundle"},
	} {
		_, err := runApp(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestQueryLockedDatabase: the daemon holds the database and answers on
// its socket; when it does not answer the error says what to do.
func TestQueryLockedDatabaseAndSocket(t *testing.T) {
	dir := t.TempDir()
	s := writeHistory(t, dir, true)
	_, err := runApp(t, "query", "endpoints", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), "no daemon answers") {
		t.Fatalf("locked database, no socket: %v", err)
	}
	// Now the "daemon" answers on DIR/tapbeat.sock.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sock := filepath.Join(dir, "tapbeat.sock")
	go func() { done <- api.NewServer(s, nil, nil).ServeUnix(ctx, sock) }()
	defer func() { cancel(); <-done }()
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := runApp(t, "query", "who", "--dir", dir, "--ip", "10.9.0.5", "--at", "2026-11-17T09:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "laptop-a") {
		t.Errorf("who through the socket:\n%s", out)
	}
	out, err = runApp(t, "query", "endpoints", "--dir", dir)
	if err != nil || !strings.Contains(out, "laptop-a") {
		t.Errorf("endpoints through the socket: %v\n%s", err, out)
	}
	// Online backup through the daemon, restore into a new directory, query the copy.
	bk := filepath.Join(t.TempDir(), "h.backup.gz")
	if out, err := runApp(t, "backup", "--dir", dir, "--out", bk); err != nil || !strings.Contains(out, "daemon at") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if _, err := runApp(t, "backup", "--dir", dir, "--out", bk); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
	if _, err := runApp(t, "restore", "--dir", dir, "--in", bk); err == nil || !strings.Contains(err.Error(), "stop it before restoring") {
		t.Errorf("restore under a running daemon: %v", err)
	}
	copyDir := t.TempDir()
	if _, err := runApp(t, "restore", "--dir", copyDir, "--in", bk); err != nil {
		t.Fatal(err)
	}
	if _, err := runApp(t, "restore", "--dir", copyDir, "--in", bk); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("restore over a database: %v", err)
	}
	if out, err := runApp(t, "restore", "--dir", copyDir, "--in", bk, "--force"); err != nil || !strings.Contains(out, "moved the old history") {
		t.Errorf("restore --force: %v\n%s", err, out)
	}
	out, err = runApp(t, "query", "who", "--dir", copyDir, "--ip", "10.9.0.5", "--at", "2026-11-17T09:00:00Z")
	if err != nil || !strings.Contains(out, "laptop-a") || !strings.Contains(out, "alice") {
		t.Errorf("who on the restored copy: %v\n%s", err, out)
	}
}

// TestQueryEscapesEndpointText: a user name and health reason carrying
// terminal escapes, NUL and a right-to-left override come out escaped in
// tables and csv, whole in json.
func TestQueryEscapesEndpointText(t *testing.T) {
	dir := t.TempDir()
	s, err := history.Open(filepath.Join(dir, "history"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &sensor.ManualClock{T: qt0}
	c, _ := sensor.NewCorrelator(sensor.Config{}, clock)
	const user, reason = "eve\x1b]0;owned\x07", "av off\x00\u202etxt.exe\x1b[2J"
	evs, err := c.Hello(schema.Hello{EndpointID: "ep-e", Name: "evil\x1b[31m", Org: "acme", Health: schema.HealthRed,
		Reasons: []string{reason}, Users: []string{user},
		Interfaces: []schema.Interface{{Name: "eth0", MAC: qMacA, IPs: []netip.Addr{qIP}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(evs, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	base := []string{"--dir", dir, "--tz", "UTC", "--since", "2026-11-17", "--until", "2026-11-18"}
	for _, args := range [][]string{
		{"query", "endpoints"}, {"query", "endpoints", "--format", "csv"},
		{"query", "alerts"}, {"query", "alerts", "--format", "csv"},
		{"query", "history", "--endpoint", "ep-e"}, {"query", "history", "--endpoint", "ep-e", "--format", "csv"},
		{"query", "who", "--ip", qIP.String(), "--at", "2026-11-17 09:00"},
		{"query", "who", "--ip", qIP.String(), "--at", "2026-11-17 09:00", "--format", "csv"},
	} {
		a := append(append(args[:2:2], base...), args[2:]...)
		if args[1] == "endpoints" || args[1] == "who" {
			a = append(append(args[:2:2], base[:4]...), args[2:]...)
		}
		out, err := runApp(t, a...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, bad := range []string{"\x1b", "\x07", "\x00", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v prints %q raw:\n%q", args, bad, out)
			}
		}
		if !strings.Contains(out, `\x1b`) {
			t.Errorf("%v shows no escaped text:\n%s", args, out)
		}
	}
	out, err := runApp(t, append([]string{"query", "endpoints", "--format", "json"}, base[:4]...)...)
	if err != nil {
		t.Fatal(err)
	}
	var l api.EndpointList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Endpoints) != 1 || l.Endpoints[0].Users[0] != user {
		t.Errorf("json keeps the text whole: %v %+v", err, l)
	}
}
