package fleet

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// A holder's registry record vouches for the records it holds, so the
// holder mends them against the bucket: a held endpoint's record that
// another write turned to "disconnected" (a release racing a
// reconnection) is written again; a record another sensor took over is
// left to it; a record that names this sensor for an endpoint it does not
// hold (left by a restart) is released once reclaimAfter has passed, with
// the cause that leaves it to the missing deadline.
func TestHolderMendsItsRecords(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	f := startSolo(t, "Mend Org", Options{Interval: interval, DegradeAfter: 3 * interval})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js, _ := jetstream.New(f.Conn())
	kv, err := js.KeyValue(ctx, BucketEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	get := func(id string) (EndpointRecord, bool) {
		e, err := kv.Get(ctx, id)
		if err != nil {
			return EndpointRecord{}, false
		}
		var r EndpointRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return r, true
	}
	put := func(r EndpointRecord) {
		raw, _ := json.Marshal(r)
		if _, err := kv.Put(ctx, r.ID, raw); err != nil {
			t.Fatal(err)
		}
	}
	held := func(id string, mac string) EndpointRecord {
		return EndpointRecord{ID: id, Name: id, Org: "Mend Org", Connected: true, Health: schema.HealthGreen,
			Interfaces: []schema.Interface{{Name: "eth0", MAC: schema.MustParseMAC(mac)}}}
	}
	waitFor(t, "the watch has the bucket", 20*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.synced
	})

	// Held here, then overwritten as released.
	a := held("ep-a", "02:00:00:00:0a:01")
	f.PutEndpoint(a)
	waitFor(t, "ep-a written", 10*time.Second, func() bool { r, ok := get("ep-a"); return ok && r.Connected })
	lost, _ := get("ep-a")
	lost.Connected, lost.Cause = false, uint8(schema.CauseEOF)
	put(lost)
	took := waitFor(t, "ep-a written again", 10*reconcileEvery, func() bool {
		r, ok := get("ep-a")
		return ok && r.Connected && r.Sensor == f.Name()
	})
	t.Logf("a held record turned to disconnected was written again after %v", took.Round(time.Millisecond))

	// Held here, but another sensor took it over: left to it.
	b := held("ep-b", "02:00:00:00:0b:01")
	f.PutEndpoint(b)
	waitFor(t, "ep-b written", 10*time.Second, func() bool { _, ok := get("ep-b"); return ok })
	other, _ := get("ep-b")
	other.Sensor = "s9"
	put(other)

	// Named as held here, held by no connection here.
	orphan := held("ep-orphan", "02:00:00:00:0c:01")
	orphan.Sensor = f.Name()
	put(orphan)
	placed := time.Now()
	time.Sleep(f.reclaimAfter() / 2)
	if r, _ := get("ep-orphan"); !r.Connected {
		t.Fatalf("a record left by a restart was released after %v, before its agent had %v to come back", time.Since(placed), f.reclaimAfter())
	}
	took = waitFor(t, "ep-orphan released", f.reclaimAfter()+10*reconcileEvery, func() bool { r, _ := get("ep-orphan"); return !r.Connected })
	r, _ := get("ep-orphan")
	if schema.DisconnectCause(r.Cause) != schema.CauseSensorShutdown || r.Sensor != f.Name() {
		t.Errorf("orphan released as %+v, want cause sensor_shutdown by %s", r, f.Name())
	}
	t.Logf("a record left by a restart was released %v after it appeared (reclaimAfter %v)",
		(took + f.reclaimAfter()/2).Round(100*time.Millisecond), f.reclaimAfter())

	if r, _ := get("ep-b"); r.Sensor != "s9" || !r.Connected {
		t.Errorf("a record another sensor took over was overwritten: %+v", r)
	}
	if r, _ := get("ep-a"); !r.Connected || r.Sensor != f.Name() {
		t.Errorf("ep-a: %+v, want connected here", r)
	}
}
