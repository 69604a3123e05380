package history_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// snapshotStates is a sensor's minute: n connected endpoints, each with one
// interface and one user, every one heartbeating since the last snapshot.
func snapshotStates(n int, since, at time.Time) sensor.Snapshot {
	snap := sensor.Snapshot{NextSeq: 1}
	for i := range n {
		snap.Endpoints = append(snap.Endpoints, schema.EndpointState{
			ID: fmt.Sprintf("ep-%06d", i), Name: fmt.Sprintf("host-%06d", i), Org: "Example Org",
			Health: schema.HealthGreen, Status: schema.StatusGreen, StatusSince: since, LastHeartbeat: at.Add(-time.Duration(i%15) * time.Second),
			Connected:  true,
			Interfaces: []schema.Interface{{Name: "eth0", MAC: schema.MAC{2, 0, byte(i >> 16), byte(i >> 8), byte(i), 1}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}}},
			Users:      []string{"alice"},
		})
	}
	return snap
}

// BenchmarkSaveSnapshot saves a minute's snapshot of 51,000 endpoints
// (one sensor of the 3 × 17,000 fleet load). heartbeats: every endpoint
// heartbeated since the last save and nothing else changed, the steady
// state of a healthy fleet. changed: every endpoint also changed status,
// so every state is written whole: the reference for the ratio in
// BENCHMARKS.md, and what every snapshot cost when states were always
// rewritten.
func BenchmarkSaveSnapshot(b *testing.B) {
	for _, changed := range []bool{false, true} {
		name := "heartbeats"
		if changed {
			name = "changed"
		}
		b.Run(name, func(b *testing.B) { benchSaveSnapshot(b, changed) })
	}
}

func benchSaveSnapshot(b *testing.B, changed bool) {
	s, err := history.Open(b.TempDir(), history.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	at := time.Now()
	snap := snapshotStates(51000, at.Add(-time.Hour), at)
	if err := s.SaveSnapshot(snap); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at = at.Add(time.Minute)
		for j := range snap.Endpoints {
			st := &snap.Endpoints[j]
			st.LastHeartbeat = at.Add(-time.Duration(j%15) * time.Second)
			if changed {
				st.StatusSince = at
			}
		}
		if err := s.SaveSnapshot(snap); err != nil {
			b.Fatal(err)
		}
	}
}
