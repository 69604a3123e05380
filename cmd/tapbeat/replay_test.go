package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestReplayCommandJSON(t *testing.T) {
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	if err := app.Run([]string{"tapbeat", "replay", "--pcap", "../../testdata/capture/dhcp.pcap", "--format", "json"}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../testdata/capture/dhcp.json")
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"mac", "packets", "bytes", "rx_packets", "rx_bytes", "ips", "first_seen", "last_seen", "hostnames"} {
			if _, ok := m[k]; !ok {
				t.Errorf("object lacks %q: %s", k, sc.Text())
			}
		}
	}
}

func TestReplayCommandTruncatedFile(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/capture/ping-arp.pcap")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(p, raw[:len(raw)-30], 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	err = app.Run([]string{"tapbeat", "replay", "--pcap", p})
	if err == nil || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "byte offset") {
		t.Fatalf("want an error naming the truncation and its byte offset, got %v", err)
	}
	if !strings.Contains(out.String(), "02:00:00:00:00:0a") {
		t.Errorf("results before the damage were not printed:\n%s", out.String())
	}
}

func TestReplayCommandRejectsFormat(t *testing.T) {
	app := newApp()
	app.Writer = &bytes.Buffer{}
	err := app.Run([]string{"tapbeat", "replay", "--pcap", "../../testdata/capture/dhcp.pcap", "--format", "xml"})
	if err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Errorf("got %v", err)
	}
}

// TestReplayCommandEvents replays two minutes of three stations that never
// heartbeat: the correlator, on packet time, must call them out.
func TestReplayCommandEvents(t *testing.T) {
	p := filepath.Join(t.TempDir(), "silent.pcap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for s := range 120 {
		for st := byte(1); st <= 3; st++ {
			frame := make([]byte, 60)
			copy(frame, []byte{0x02, 0, 0, 0, 0, 0x99})
			copy(frame[6:], []byte{0x02, 0, 0, 0, 0, st})
			frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType
			ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(s) * time.Second), CaptureLength: 60, Length: 60}
			if err := w.WritePacket(ci, frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Close()
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	if err := app.Run([]string{"tapbeat", "replay", "--pcap", p, "--events"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	printed := out.String()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var ev struct {
			Type string    `json:"type"`
			Time time.Time `json:"time"`
			MACs []string  `json:"macs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Time.Before(start) || ev.Time.After(start.Add(2*time.Minute)) {
			t.Errorf("event time %v is not packet time", ev.Time)
		}
		for _, m := range ev.MACs {
			seen[ev.Type+" "+m] = true
		}
	}
	for st := 1; st <= 3; st++ {
		k := "no_heartbeat 02:00:00:00:00:0" + string(rune('0'+st))
		if !seen[k] {
			t.Errorf("missing %q in events:\n%s", k, printed)
		}
	}
}
