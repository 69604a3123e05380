package labdeploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

var (
	sidRE = regexp.MustCompile(`\[meta sequenceId="(\d+)"\]`)
	seqRE = regexp.MustCompile(`\[tapbeat@32473 seq="(\d+)"`)
)

// TestSyslogSequenceIDsAcrossRestarts sends alerts from the whole sensor to
// rsyslog through a destination with a type filter, across a restart of
// the sensor and a restart of the collector. The destination's RFC 5424
// sequenceIds must run from 1 without a gap (a message sent again keeps its
// number), although the sensor numbers many more events than it sends there.
func TestSyslogSequenceIDsAcrossRestarts(t *testing.T) {
	testenv.RequireCommands(t, "rsyslogd")
	dir := t.TempDir()
	received := filepath.Join(dir, "received.log")
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="5514")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file=%q template="raw")
`, dir, received)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	types := []schema.EventType{schema.EventHeartbeatMissing, schema.EventHeartbeatRestored}
	dest := "tcp://127.0.0.1:5514?confirm=200ms&types=" + string(types[0]) + "," + string(types[1])
	d := upLab(t, lab.Endpoints(2), Options{SensorArgs: []string{"--syslog", dest}})
	ctx := context.Background()
	startRsyslog := func() *lab.Process {
		rs, err := d.Lab.Start(ctx, lab.HostSensor, "rsyslogd", "-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rs := startRsyslog()
	t.Cleanup(func() { rs.Stop() })
	keepTalking(t, d, "ep1", "ep2")
	waitConnected(t, d, 2)

	// One round: ep1's agent is killed (missing), then comes back (restored).
	round := func() {
		t.Helper()
		before := len(alertsOf(t, d, schema.EventHeartbeatRestored))
		missing := len(alertsOf(t, d, schema.EventHeartbeatMissing))
		if err := d.StopAgent("ep1", true); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(6 * interval); len(alertsOf(t, d, schema.EventHeartbeatMissing)) == missing; {
			if time.Now().After(deadline) {
				t.Fatal("ep1 not missing")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := d.StartAgent(ctx, "ep1"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(6 * interval)
		for len(alertsOf(t, d, schema.EventHeartbeatRestored)) == before {
			if time.Now().After(deadline) {
				t.Fatal("ep1 not restored")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	round()
	// The sensor restarts.
	if err := d.StopSensor(); err != nil {
		t.Fatal(err)
	}
	if err := d.StartSensor(ctx); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, d, 2)
	round()
	// The collector restarts; what is raised meanwhile waits in the outbox.
	if err := rs.Stop(); err != nil {
		t.Logf("rsyslogd: %v", err)
	}
	round()
	rs = startRsyslog()

	// Every alert of those types the sensor raised reaches the collector.
	var want []uint64
	for _, ev := range append(alertsOf(t, d, types[0]), alertsOf(t, d, types[1])...) {
		want = append(want, ev.Seq)
	}
	slices.Sort(want)
	var sidOf map[uint64]uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(received)
		sidOf = map[uint64]uint64{}
		for _, line := range strings.Split(string(b), "\n") {
			sm, em := sidRE.FindStringSubmatch(line), seqRE.FindStringSubmatch(line)
			if sm == nil || em == nil {
				continue
			}
			sid, _ := strconv.ParseUint(sm[1], 10, 64)
			seq, _ := strconv.ParseUint(em[1], 10, 64)
			if old, ok := sidOf[seq]; ok && old != sid {
				t.Fatalf("event %d sent as sequenceId %d and again as %d", seq, old, sid)
			}
			sidOf[seq] = sid
		}
		if len(sidOf) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog received %d of %d alerts:\n%s", len(sidOf), len(want), b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i, seq := range want {
		if sidOf[seq] != uint64(i+1) {
			t.Errorf("event %d has sequenceId %d, want %d (sequenceIds run 1..%d in event order)", seq, sidOf[seq], i+1, len(want))
		}
	}
	if last := want[len(want)-1]; last <= uint64(len(want)) {
		t.Fatalf("the sensor numbered only %d events for %d alerts: the test shows nothing", last, len(want))
	}
	t.Logf("%d alerts, sequenceIds 1..%d without a gap; the events' own numbers reach %d", len(want), len(want), want[len(want)-1])
}
