package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/appliance/status"
	"github.com/tapbeat/tapbeat/appliance/supervise"
)

func TestFirstBootMessage(t *testing.T) {
	for _, diskFound := range []bool{false, true} {
		m := firstBootMessage("TAPBEAT-DATA", diskFound)
		for _, want := range []string{"tapbeat init --dir DIR", "tapbeat enroll --dir DIR --admin", "appliance.toml",
			"mke2fs -t ext4 -L TAPBEAT-DATA -d DIR", "tapbeat.format=1", "power button"} {
			if !strings.Contains(m, want) {
				t.Errorf("diskFound=%v: message lacks %q:\n%s", diskFound, want, m)
			}
		}
		for _, l := range strings.Split(m, "\n") {
			if len(l) > 80 {
				t.Errorf("line wider than the console: %q", l)
			}
		}
	}
}

func TestSummary(t *testing.T) {
	s := status.Snapshot{
		Time: time.Now(),
		NICs: []status.NIC{
			{Role: "mgmt", Name: "eth0", Address: "10.0.2.15/24 via 10.0.2.2"},
			{Role: "capture", Name: "eth1", RxPackets: 9, RxRate: 3},
		},
		Daemon: supervise.State{Running: true, Ready: true},
		Sensor: &status.Sensor{Endpoints: map[string]int{"green": 1, "red": 0, "missing": 2}, Alerts1h: 4},
	}
	got := summary(s)
	want := "mgmt eth0 10.0.2.15/24 via 10.0.2.2; capture eth1 rx=true tx=0; sensor ready; endpoints [green=1 missing=2] alerts/1h 4"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	// Rates change every tick; the summary must not, or the console fills up.
	s.NICs[1].RxRate = 100
	if summary(s) != got {
		t.Error("summary depends on the frame rate")
	}
}
