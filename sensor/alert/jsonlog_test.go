package alert

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func readLines(t *testing.T, path string) []schema.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []schema.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev schema.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func TestJSONLogRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "alerts.jsonl")
	l, err := OpenJSONLog(path, JSONLogOptions{MaxBytes: 4096, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	evs := testEvents(1, 60)
	evs = append(evs, schema.Event{Seq: 61, Type: schema.EventEndpointHello, Severity: schema.SeverityInfo})
	for i := 0; i < len(evs); i += 7 {
		if err := l.Write(evs[i:min(i+7, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Newest file first: alerts.jsonl, .1, .2, .3; nothing older kept.
	var got []schema.Event
	for _, p := range []string{path + ".3", path + ".2", path + ".1", path} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over the 4096 limit", p, st.Size())
		}
		got = append(got, readLines(t, p)...)
	}
	if _, err := os.Stat(path + ".4"); !os.IsNotExist(err) {
		t.Errorf("%s.4 kept beyond Keep=3", path)
	}
	if len(got) == 0 || got[len(got)-1].Seq != 60 {
		t.Fatalf("last alert %v, want 60 (the info event is filtered out)", got[len(got)-1].Seq)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("gap between %d and %d: lines lost or split", got[i-1].Seq, got[i].Seq)
		}
	}
	if got[0].Reason != evs[got[0].Seq-1].Reason {
		t.Errorf("reason %q", got[0].Reason)
	}

	// Reopening appends to the current file.
	l, err = OpenJSONLog(path, JSONLogOptions{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	before := len(readLines(t, path))
	if err := l.Write(testEvents(100, 1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if n := len(readLines(t, path)); n != before+1 {
		t.Errorf("after reopen %d lines, want %d", n, before+1)
	}
	if err := l.Write(testEvents(101, 1)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("write after close: %v", err)
	}
}

func TestJSONLogBadPath(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := OpenJSONLog(filepath.Join(f, "alerts.jsonl"), JSONLogOptions{}); err == nil || !strings.Contains(err.Error(), "alert log") {
		t.Errorf("log under a file: %v", err)
	}
}
