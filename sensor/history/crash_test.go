package history

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

const crashChildEnv = "TAPBEAT_HISTORY_CRASH_DIR"

// crashChild ingests until killed, printing each acknowledged batch's last
// sequence number after Append returns.
func crashChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	sp, err := s.Space("alert")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	seq := s.NextSeq()
	start := time.Date(2026, 11, 17, 8, 0, 0, 0, time.UTC)
	for batch := 0; ; batch++ {
		evs := make([]schema.Event, 200)
		for i := range evs {
			id := fmt.Sprintf("ep-%d", int(seq)%500)
			evs[i] = schema.Event{
				Seq: seq, Time: start.Add(time.Duration(seq) * time.Millisecond), Type: schema.EventStatusChanged,
				Severity: schema.SeverityWarning, EndpointID: id, EndpointName: "host-" + id,
				MACs: []schema.MAC{schema.MACFromUint64(0x020000000000 + seq%500)}, Status: schema.StatusYellow,
				PreviousStatus: schema.StatusGreen, Transition: true, Reason: "reported health yellow",
			}
			seq++
		}
		last := seq - 1
		err := s.Append(evs, func(b *Batch) error {
			return b.Set(sp, []byte("outbox/"+strconv.FormatUint(last, 10)), binary.BigEndian.AppendUint64(nil, last))
		})
		if err != nil {
			fmt.Fprintln(w, "error", err)
			w.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(w, "ack", last)
		w.Flush()
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// TestKill9MidIngestLosesNothingAcknowledged kills a writer process with
// SIGKILL in the middle of heavy ingest, twice, and checks after reopening
// that every event and outbox entry it acknowledged is there and that the
// next sequence number is past them.
func TestKill9MidIngestLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	var acked []uint64
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		killed := false
		deadline := time.Now().Add(20 * time.Second)
		before := len(acked)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "ack "); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				acked = append(acked, n)
			} else {
				t.Fatalf("child: %s", line)
			}
			if !killed && (len(acked)-before >= 40 || time.Now().After(deadline)) {
				cmd.Process.Kill() // SIGKILL, mid-batch
				killed = true
			}
		}
		cmd.Wait()
		if len(acked)-before < 40 {
			t.Fatalf("round %d: only %d batches acknowledged", round, len(acked)-before)
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	last := acked[len(acked)-1]
	if s.NextSeq() <= last {
		t.Fatalf("next seq %d, but %d was acknowledged", s.NextSeq(), last)
	}
	// Every acknowledged event is in its endpoint's history.
	seen := map[uint64]bool{}
	for i := 0; i < 500; i++ {
		evs, err := s.History(HistoryQuery{Range: Range{Since: time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)},
			Endpoint: fmt.Sprintf("ep-%d", i), Limit: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			seen[ev.Seq] = true
		}
	}
	missing := 0
	for seq := uint64(1); seq <= last; seq++ {
		if !seen[seq] {
			missing++
		}
	}
	// The latest states were rebuilt from the events: each endpoint's
	// status time is at least that of its last acknowledged event.
	snap, err := s.LoadSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Endpoints) != 500 {
		t.Errorf("%d endpoint states after recovery, want 500", len(snap.Endpoints))
	}
	for _, st := range snap.Endpoints {
		n, _ := strconv.Atoi(strings.TrimPrefix(st.ID, "ep-"))
		lastSeq := last - (last-uint64(n))%500
		want := time.Date(2026, 11, 17, 8, 0, 0, 0, time.UTC).Add(time.Duration(lastSeq) * time.Millisecond)
		if st.StatusSince.Before(want) {
			t.Errorf("%s: status since %v, but an event at %v was acknowledged", st.ID, st.StatusSince, want)
		}
	}
	sp, err := s.Space("alert")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acked {
		if _, ok, err := sp.Get([]byte("outbox/" + strconv.FormatUint(a, 10))); err != nil {
			t.Fatal(err)
		} else if !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged records lost (last acknowledged seq %d)", missing, last)
	}
	t.Logf("%d batches, %d events acknowledged and recovered", len(acked), last)
}
