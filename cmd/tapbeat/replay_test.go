package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
