package synth

import (
	"context"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// TestGeneratedHistoryAnswersAsDesigned generates a small fleet and checks
// the answers the generator promises: who had each address while present,
// the unmanaged devices, and one hello per endpoint per day.
func TestGeneratedHistoryAnswersAsDesigned(t *testing.T) {
	end := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	s, err := history.Open(t.TempDir(), history.Options{Now: func() time.Time { return end }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := Config{Endpoints: 60, Days: 3, End: end, Seed: 7, TrafficMinutes: 3, UnmanagedPerDay: 4}
	st, err := Generate(context.Background(), s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events < int64(60*3*4) || st.TrafficRows != int64(3*(60*3+4)) {
		t.Fatalf("stats %+v", st)
	}
	last := uint32(end.Unix()/86400) - 1
	for d := last - 2; d <= last; d++ {
		for i := 0; i < cfg.Endpoints; i += 7 {
			arrive, leave := Presence(cfg.Seed, i, d)
			at := arrive.Add(leave.Sub(arrive) / 2)
			ans, err := s.Who(IPOf(i, d, cfg.Endpoints), at)
			if err != nil {
				t.Fatal(err)
			}
			if ans.MAC == nil || *ans.MAC != EndpointMAC(i) || ans.Endpoint == nil || ans.Endpoint.Name != EndpointName(i) || ans.Status == nil {
				t.Fatalf("who %s at %s: %+v, want %s", IPOf(i, d, cfg.Endpoints), at, ans, EndpointName(i))
			}
		}
	}
	un, err := s.Unmanaged(history.Range{Since: end.Add(-4 * 24 * time.Hour), Until: end})
	if err != nil {
		t.Fatal(err)
	}
	if len(un) != 3*4 {
		t.Errorf("%d unmanaged stations, want 12", len(un))
	}
	evs, err := s.History(history.HistoryQuery{Range: history.Range{Since: end.Add(-4 * 24 * time.Hour), Until: end}, Endpoint: EndpointName(5),
		Types: []schema.EventType{schema.EventEndpointHello}})
	if err != nil || len(evs) != 3 {
		t.Errorf("hellos of %s: %v %d, want 3", EndpointName(5), err, len(evs))
	}
}
