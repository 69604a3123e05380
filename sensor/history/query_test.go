package history

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func openTest(t *testing.T, dir string, now time.Time) *Store {
	t.Helper()
	s, err := Open(dir, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scripted builds the scripted history on disk, closes the store and
// reopens it, so every query reads what really reached the disk.
func scripted(t *testing.T) (*Store, *scenario) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "history")
	now := at(23, 0)
	s := openTest(t, dir, now)
	sc := newScenario(t, s)
	sc.run()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, now)
	t.Cleanup(func() { s.Close() })
	sc.s = s
	return s, sc
}

func TestWhoAnswersWhichMachineHadTheIP(t *testing.T) {
	s, _ := scripted(t)
	cases := []struct {
		name       string
		at         time.Time
		mac        schema.MAC
		endpoint   string
		status     schema.Status
		users      []string
		confidence string
	}{
		{"morning, observed by ARP", at(9, 30), mac1, "laptop-1", schema.StatusGreen, []string{"alice"}, ConfidenceObserved},
		{"after the second hello: bob signed in", at(12, 30), mac1, "laptop-1", schema.StatusGreen, []string{"alice", "bob"}, ConfidenceContested},
		{"yellow at 13:30", at(13, 30), mac1, "laptop-1", schema.StatusYellow, []string{"alice", "bob"}, ConfidenceContested},
		{"IP reused by mac2 at 14:05", at(14, 5), mac2, "", "", nil, ConfidenceLastSeen},
		{"14:00:30 within mac2's interval", at(14, 0).Add(30 * time.Second), mac2, "", "", nil, ConfidenceObserved},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ans, err := s.Who(ipA, c.at)
			if err != nil {
				t.Fatal(err)
			}
			if ans.MAC == nil || *ans.MAC != c.mac {
				t.Fatalf("MAC = %v, want %v (answer %+v)", ans.MAC, c.mac, ans)
			}
			if ans.Confidence != c.confidence {
				t.Errorf("confidence = %s, want %s", ans.Confidence, c.confidence)
			}
			if c.endpoint == "" {
				if ans.Endpoint != nil {
					t.Errorf("endpoint = %+v, want none", ans.Endpoint)
				}
				if ans.Unmanaged == nil || !slices.Contains(ans.Unmanaged.Hostnames, "printer-x") {
					t.Errorf("unmanaged = %+v, want the station with host name printer-x", ans.Unmanaged)
				}
				return
			}
			if ans.Endpoint == nil || ans.Endpoint.Name != c.endpoint || ans.Endpoint.EndpointID != "ep-1" {
				t.Fatalf("endpoint = %+v, want %s", ans.Endpoint, c.endpoint)
			}
			if ans.Status == nil || ans.Status.Status != c.status {
				t.Errorf("status = %+v, want %s", ans.Status, c.status)
			}
			if !slices.Equal(ans.Users, c.users) {
				t.Errorf("users = %v, want %v", ans.Users, c.users)
			}
		})
	}
}

func TestWhoAcrossMidnight(t *testing.T) {
	s := openTest(t, t.TempDir(), at(23, 0).Add(2*dayLen))
	defer s.Close()
	next := day0.Add(dayLen)
	for _, b := range []schema.Binding{
		{MAC: mac1, IP: ipB, Source: "arp", Time: at(23, 50)},
		{MAC: mac1, IP: ipB, Source: "arp", Time: next.Add(10 * time.Minute)},
		{MAC: mac2, IP: ipB, Source: "dhcp", Time: next.Add(2 * time.Hour)},
	} {
		if err := s.AddBindings([]schema.Binding{b}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		at   time.Time
		mac  schema.MAC
		conf string
	}{
		{next.Add(5 * time.Minute), mac1, ConfidenceBetween},
		{at(23, 55), mac1, ConfidenceBetween},
		{next.Add(time.Hour), mac1, ConfidenceContested},
		{next.Add(3 * time.Hour), mac2, ConfidenceLastSeen},
		{next.Add(2 * time.Hour), mac2, ConfidenceObserved},
	} {
		ans, err := s.Who(ipB, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if ans.MAC == nil || *ans.MAC != c.mac || ans.Confidence != c.conf {
			t.Errorf("who at %s: %v %s, want %v %s", c.at, ans.MAC, ans.Confidence, c.mac, c.conf)
		}
	}
}

func TestWhoTimeZones(t *testing.T) {
	s, _ := scripted(t)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	// 15:05 in Paris (UTC+1 in November) is 14:05 UTC: mac2. The same wall
	// time in UTC would be after the script, also mac2; 12:30 Paris is
	// 11:30 UTC, laptop-1.
	for _, c := range []struct {
		at   string
		loc  *time.Location
		want schema.MAC
	}{
		{"2026-11-17T15:05:00+01:00", nil, mac2},
		{"2026-11-17 15:05", paris, mac2},
		{"2026-11-17 12:30", paris, mac1},
		{"2026-11-17T08:30:00-03:00", nil, mac1}, // 11:30 UTC
		{"2026-11-17T09:05:00-05:00", nil, mac2}, // 14:05 UTC
	} {
		loc := c.loc
		if loc == nil {
			loc = time.UTC
		}
		ts, err := ParseTime(c.at, at(23, 0), loc)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := s.Who(ipA, ts)
		if err != nil {
			t.Fatal(err)
		}
		if ans.MAC == nil || *ans.MAC != c.want {
			t.Errorf("who %s at %s (%s): MAC %v, want %v", ipA, c.at, ts.UTC(), ans.MAC, c.want)
		}
	}
}

func TestWhoUnknownIP(t *testing.T) {
	s, _ := scripted(t)
	ans, err := s.Who(ipMac2, at(12, 0))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Confidence != ConfidenceNone || ans.MAC != nil {
		t.Fatalf("answer %+v, want none", ans)
	}
	// Before the first binding of 10.1.2.3: none, with the next one shown.
	ans, err = s.Who(ipA, at(7, 0))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Confidence != ConfidenceNone || ans.Next == nil || ans.Next.MAC != mac1 {
		t.Fatalf("answer %+v, want none with next = mac1", ans)
	}
}

func types(evs []schema.Event) []schema.EventType {
	var out []schema.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestHistoryByEndpointAndMAC(t *testing.T) {
	s, sc := scripted(t)
	day := Range{Since: day0, Until: day0.Add(dayLen - 1)}
	var want []schema.Event
	for _, e := range sc.all {
		if e.EndpointID == "ep-2" {
			want = append(want, e)
		}
	}
	for _, q := range []HistoryQuery{
		{Range: day, Endpoint: "laptop-2"},
		{Range: day, Endpoint: "LAPTOP-2"},
		{Range: day, Endpoint: "ep-2"},
		{Range: day, MAC: mac3},
	} {
		got, err := s.History(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: %d events %v, want %d %v", q, len(got), types(got), len(want), types(want))
		}
		for i := range got {
			if got[i].Seq != want[i].Seq || got[i].Type != want[i].Type || !got[i].Time.Equal(want[i].Time) {
				t.Errorf("%+v: event %d = %d %s, want %d %s", q, i, got[i].Seq, got[i].Type, want[i].Seq, want[i].Type)
			}
		}
	}
	// laptop-2 went missing at 10:01, then escalated.
	got, _ := s.History(HistoryQuery{Range: day, Endpoint: "laptop-2", Types: []schema.EventType{schema.EventHeartbeatMissing}})
	if len(got) == 0 || !got[0].Time.Equal(at(10, 1)) {
		t.Fatalf("missing events %v, want the first at 10:01", got)
	}
	// A window that ends before it went missing has no missing event.
	got, _ = s.History(HistoryQuery{Range: Range{Since: at(8, 0), Until: at(10, 0)}, Endpoint: "laptop-2"})
	for _, e := range got {
		if e.Type == schema.EventHeartbeatMissing || e.Time.After(at(10, 0)) {
			t.Errorf("event %s at %s outside the window", e.Type, e.Time)
		}
	}
	// Limit keeps the most recent.
	got, _ = s.History(HistoryQuery{Range: day, Endpoint: "laptop-2", Limit: 1})
	if len(got) != 1 || got[0].Seq != want[len(want)-1].Seq {
		t.Errorf("limit 1: %v, want the last event", types(got))
	}
	if _, err := s.History(HistoryQuery{Range: day}); err == nil {
		t.Error("history without endpoint or MAC: no error")
	}
}

func TestAlertsWhatElseWasMissingThatDay(t *testing.T) {
	s, sc := scripted(t)
	day := Range{Since: day0, Until: day0.Add(dayLen - 1)}
	missing, err := s.Alerts(AlertQuery{Range: day, Types: []schema.EventType{schema.EventHeartbeatMissing}})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) == 0 {
		t.Fatal("no heartbeat_missing alert")
	}
	for _, e := range missing {
		if e.EndpointName != "laptop-2" || e.Type != schema.EventHeartbeatMissing {
			t.Errorf("unexpected alert %s %s", e.Type, e.EndpointName)
		}
	}
	all, err := s.Alerts(AlertQuery{Range: day})
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for _, e := range sc.all {
		if e.IsAlert() {
			want = append(want, e.Seq)
		}
	}
	var got []uint64
	for _, e := range all {
		got = append(got, e.Seq)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("all alerts %v, want %v", got, want)
	}
	if !slices.Contains(types(all), schema.EventNoHeartbeat) || !slices.Contains(types(all), schema.EventStatusChanged) {
		t.Errorf("alerts %v lack no_heartbeat or the yellow status change", types(all))
	}
	ep1, err := s.Alerts(AlertQuery{Range: day, Endpoint: "laptop-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep1) != 1 || ep1[0].Status != schema.StatusYellow {
		t.Errorf("laptop-1 alerts %v, want the one yellow status change", types(ep1))
	}
	// The day before holds nothing.
	prev, _ := s.Alerts(AlertQuery{Range: Range{Since: day0.Add(-dayLen), Until: day0.Add(-1)}})
	if len(prev) != 0 {
		t.Errorf("alerts the day before: %v", types(prev))
	}
}

func TestTrafficPerMinute(t *testing.T) {
	s, _ := scripted(t)
	got, err := s.Traffic(TrafficQuery{Range: Range{Since: at(14, 0), Until: at(14, 10)}, MAC: mac2})
	if err != nil {
		t.Fatal(err)
	}
	want := []TrafficMinute{
		{MAC: mac2, Minute: at(14, 0), Packets: 10, Bytes: 1000},
		{MAC: mac2, Minute: at(14, 1), Packets: 20, Bytes: 2000},
		{MAC: mac2, Minute: at(14, 2), Packets: 30, Bytes: 3000},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("traffic %+v, want %+v", got, want)
	}
	got, _ = s.Traffic(TrafficQuery{Range: Range{Since: at(14, 1), Until: at(14, 1)}, MAC: mac2})
	if len(got) != 1 || got[0].Packets != 20 {
		t.Fatalf("one minute: %+v", got)
	}
}

func TestUnmanagedInventory(t *testing.T) {
	s, _ := scripted(t)
	got, err := s.Unmanaged(Range{Since: day0, Until: day0.Add(dayLen - 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("unmanaged %+v, want mac2 only", got)
	}
	st := got[0]
	if st.MAC != mac2 || !st.FirstSeen.Equal(at(14, 0)) || !st.LastSeen.Equal(at(14, 2).Add(30*time.Second)) {
		t.Errorf("station %+v: want mac2 first 14:00:00 last 14:02:30", st)
	}
	if !slices.Contains(st.IPs, ipA) || !slices.Equal(st.Hostnames, []string{"printer-x"}) {
		t.Errorf("station IPs %v host names %v", st.IPs, st.Hostnames)
	}
	if st.Packets != 60 {
		t.Errorf("station packets %d, want 60", st.Packets)
	}
}

func TestEndpointsAndSnapshot(t *testing.T) {
	s, sc := scripted(t)
	eps, err := s.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 {
		t.Fatalf("endpoints %+v", eps)
	}
	if eps[0].ID != "ep-1" || eps[0].Status != schema.StatusYellow || !slices.Equal(eps[0].Users, []string{"alice", "bob"}) {
		t.Errorf("ep-1 %+v", eps[0])
	}
	if eps[1].ID != "ep-2" || eps[1].Status != schema.StatusMissing {
		t.Errorf("ep-2 %+v", eps[1])
	}
	snap, err := s.LoadSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.NextSeq != sc.c.NextSeq() {
		t.Errorf("next seq %d, want %d", snap.NextSeq, sc.c.NextSeq())
	}
	if !slices.Contains(snap.Alerted, mac2) {
		t.Errorf("alerted %v lacks mac2", snap.Alerted)
	}
	// The snapshot restores a fresh correlator.
	c2, _ := sensor.NewCorrelator(sensor.Config{}, &sensor.ManualClock{T: at(23, 0)})
	if err := c2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if c2.NextSeq() != sc.c.NextSeq() || len(c2.Endpoints()) != 2 {
		t.Errorf("restored correlator: next %d, %d endpoints", c2.NextSeq(), len(c2.Endpoints()))
	}
	// A periodic snapshot replaces the states, last heartbeats included.
	live := sc.c.Snapshot()
	if err := s.SaveSnapshot(live); err != nil {
		t.Fatal(err)
	}
	eps, _ = s.Endpoints()
	if !eps[0].LastHeartbeat.Equal(live.Endpoints[0].LastHeartbeat) {
		t.Errorf("last heartbeat %v, want %v", eps[0].LastHeartbeat, live.Endpoints[0].LastHeartbeat)
	}
}

func TestAppendRejectsUnnumberedEvents(t *testing.T) {
	s := openTest(t, t.TempDir(), at(12, 0))
	defer s.Close()
	good := schema.Event{Seq: 1, Time: at(12, 0), Type: schema.EventAuthFailed, Severity: schema.SeverityWarning}
	bad := schema.Event{Time: at(12, 0), Type: schema.EventAuthFailed}
	if err := s.Append([]schema.Event{good, bad}, nil); err == nil {
		t.Fatal("event without seq accepted")
	}
	// Nothing of the rejected batch was written.
	if got, _ := s.Alerts(AlertQuery{Range: Range{Since: day0, Until: at(23, 0)}}); len(got) != 0 {
		t.Fatalf("rejected batch partly written: %v", got)
	}
	if err := s.Append([]schema.Event{good}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Alerts(AlertQuery{Range: Range{Since: day0, Until: at(23, 0)}}); len(got) != 1 {
		t.Fatalf("alerts %v", got)
	}
}
