// Package synth owns tapbeat's synthetic-history generator: a working week
// for a fleet of endpoints (arrivals, hellos, DHCP and ARP bindings, health
// changes, missing heartbeats, departures, per-minute traffic and a trickle
// of unmanaged devices), written through history.Store exactly as the daemon
// writes, for benchmarks and demonstrations. Every answer is derivable from
// the seed, so benchmarks can check what they read.
package synth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Config describes the history to generate.
type Config struct {
	Endpoints int       // default 10,000
	Days      int       // default 90
	End       time.Time // the last day generated is the UTC day before End's (default now)
	Seed      uint64
	// TrafficMinutes is how many per-minute traffic rows each endpoint gets
	// per day (default 10).
	TrafficMinutes int
	// UnmanagedPerDay is how many new unmanaged devices appear each day
	// (default 20).
	UnmanagedPerDay int
	// Batch is the number of events per Append (default 1000).
	Batch int
	// Progress, if set, is called after each day.
	Progress func(day int, st Stats)
}

func (c Config) withDefaults() Config {
	if c.Endpoints <= 0 {
		c.Endpoints = 10000
	}
	if c.Days <= 0 {
		c.Days = 90
	}
	if c.End.IsZero() {
		c.End = time.Now()
	}
	if c.TrafficMinutes < 0 {
		c.TrafficMinutes = 0
	} else if c.TrafficMinutes == 0 {
		c.TrafficMinutes = 10
	}
	if c.UnmanagedPerDay <= 0 {
		c.UnmanagedPerDay = 20
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	return c
}

// Stats counts what was written.
type Stats struct {
	Events      int64         `json:"events"`
	Bindings    int64         `json:"bindings"`
	TrafficRows int64         `json:"traffic_rows"`
	AppendTime  time.Duration `json:"append_ns"` // time spent in Append
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// EndpointMAC returns endpoint i's MAC.
func EndpointMAC(i int) schema.MAC { return schema.MACFromUint64(0x021000000000 + uint64(i)) }

// EndpointID returns endpoint i's id.
func EndpointID(i int) string { return fmt.Sprintf("ep-%05d", i) }

// EndpointName returns endpoint i's host name.
func EndpointName(i int) string { return fmt.Sprintf("host-%05d", i) }

// IPOf returns the address endpoint i leases on day d (days since the
// epoch): the pool shifts every day, so addresses pass from MAC to MAC.
func IPOf(i int, d uint32, endpoints int) netip.Addr {
	pool := endpoints + endpoints/10 + 1
	p := (i + int(d)*7919) % pool
	return netip.AddrFrom4([4]byte{10, byte(p >> 16), byte(p >> 8), byte(p)}).Next()
}

// Presence returns when endpoint i arrives and leaves on day d.
func Presence(seed uint64, i int, d uint32) (arrive, leave time.Time) {
	r := rand.New(rand.NewPCG(seed^uint64(d)<<32, uint64(i)))
	day := time.Unix(int64(d)*86400, 0).UTC()
	arrive = day.Add(7*time.Hour + time.Duration(r.Int64N(int64(3*time.Hour))))
	leave = day.Add(17*time.Hour + time.Duration(r.Int64N(int64(3*time.Hour))))
	return arrive, leave
}

type timed[T any] struct {
	t time.Time
	v T
}

// Generate writes the history into s.
func Generate(ctx context.Context, s *history.Store, cfg Config) (Stats, error) {
	cfg = cfg.withDefaults()
	var st Stats
	start := time.Now()
	seq := s.NextSeq()
	// Whole days, all in the past: the last one ends before End's day.
	last := uint32(cfg.End.Unix()/86400) - 1
	first := last - uint32(cfg.Days) + 1
	for d := first; d <= last; d++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		evs, binds, traffic := cfg.day(d)
		slices.SortStableFunc(evs, func(a, b schema.Event) int { return a.Time.Compare(b.Time) })
		for i := range evs {
			evs[i].Seq = seq
			seq++
		}
		// Feed hour by hour, as the daemon would over the day.
		ei, bi, ti := 0, 0, 0
		day := time.Unix(int64(d)*86400, 0).UTC()
		for h := 1; h <= 24; h++ {
			until := day.Add(time.Duration(h) * time.Hour)
			var bs []schema.Binding
			for bi < len(binds) && binds[bi].t.Before(until) {
				bs = append(bs, binds[bi].v)
				bi++
			}
			if err := s.AddBindings(bs); err != nil {
				return st, err
			}
			st.Bindings += int64(len(bs))
			for ti < len(traffic) && traffic[ti].t.Before(until) {
				n := ti
				for n < len(traffic) && n-ti < 4096 && traffic[n].t.Before(until) {
					n++
				}
				batch := make([]schema.TrafficSummary, 0, n-ti)
				for _, x := range traffic[ti:n] {
					batch = append(batch, x.v)
				}
				if err := s.AddTraffic(batch); err != nil {
					return st, err
				}
				st.TrafficRows += int64(n - ti)
				ti = n
			}
			for ei < len(evs) && evs[ei].Time.Before(until) {
				n := ei
				for n < len(evs) && n-ei < cfg.Batch && evs[n].Time.Before(until) {
					n++
				}
				t0 := time.Now()
				if err := s.Append(evs[ei:n], nil); err != nil {
					return st, err
				}
				st.AppendTime += time.Since(t0)
				st.Events += int64(n - ei)
				ei = n
			}
		}
		if err := s.Flush(); err != nil {
			return st, err
		}
		st.Elapsed = time.Since(start)
		if cfg.Progress != nil {
			cfg.Progress(int(d-first)+1, st)
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// day builds day d's events, binding observations and traffic, each sorted
// by time.
func (cfg Config) day(d uint32) ([]schema.Event, []timed[schema.Binding], []timed[schema.TrafficSummary]) {
	var evs []schema.Event
	var binds []timed[schema.Binding]
	var traffic []timed[schema.TrafficSummary]
	for i := 0; i < cfg.Endpoints; i++ {
		r := rand.New(rand.NewPCG(cfg.Seed^uint64(d)<<32^0x5eed, uint64(i)))
		arrive, leave := Presence(cfg.Seed, i, d)
		mac := EndpointMAC(i)
		ip := IPOf(i, d, cfg.Endpoints)
		id, name := EndpointID(i), EndpointName(i)
		users := []string{fmt.Sprintf("user%04d", i%5000)}
		if r.IntN(10) == 0 {
			users = append(users, "admin")
		}
		base := schema.Event{EndpointID: id, EndpointName: name, Org: "acme", MACs: []schema.MAC{mac}, IPs: []netip.Addr{ip}}
		ev := func(t time.Time, typ schema.EventType, sev schema.Severity, prev, cur schema.Status, reason string) schema.Event {
			e := base
			e.Time, e.Type, e.Severity, e.PreviousStatus, e.Status, e.Reason = t, typ, sev, prev, cur, reason
			// As the correlator marks them: the events that change the status.
			e.Transition = typ == schema.EventStatusChanged || typ == schema.EventHeartbeatMissing || typ == schema.EventHeartbeatRestored
			return e
		}
		hello := ev(arrive, schema.EventEndpointHello, schema.SeverityInfo, "", schema.StatusOffline, "endpoint declared its interfaces and users")
		hello.Details = &schema.HelloDetails{
			Interfaces: []schema.Interface{{Name: "eth0", MAC: mac, IPs: []netip.Addr{ip}}},
			Users:      users,
		}
		evs = append(evs, hello,
			ev(arrive, schema.EventStatusChanged, schema.SeverityInfo, schema.StatusOffline, schema.StatusGreen, "reported health green"))
		t := arrive.Add(2 * time.Hour)
		switch x := r.IntN(100); {
		case x < 10:
			evs = append(evs,
				ev(t, schema.EventStatusChanged, schema.SeverityWarning, schema.StatusGreen, schema.StatusYellow, "reported health yellow: signatures 2 days old"),
				ev(t.Add(time.Hour), schema.EventStatusChanged, schema.SeverityNotice, schema.StatusYellow, schema.StatusGreen, "reported health green"))
		case x < 12:
			evs = append(evs,
				ev(t, schema.EventStatusChanged, schema.SeverityError, schema.StatusGreen, schema.StatusRed, "reported health red: malware detected"),
				ev(t.Add(30*time.Minute), schema.EventStatusChanged, schema.SeverityNotice, schema.StatusRed, schema.StatusGreen, "reported health green"))
		case x < 15:
			m := ev(t, schema.EventHeartbeatMissing, schema.SeverityError, schema.StatusGreen, schema.StatusMissing, "no heartbeat for 45s while its MACs keep sending")
			m.Details = &schema.HeartbeatMissingDetails{SilentForSeconds: 45, Escalation: 1}
			evs = append(evs, m,
				ev(t.Add(20*time.Minute), schema.EventHeartbeatRestored, schema.SeverityNotice, schema.StatusMissing, schema.StatusGreen, "heartbeat restored after 20m0s missing"))
		}
		evs = append(evs,
			ev(leave, schema.EventEndpointDisconnected, schema.SeverityInfo, "", schema.StatusGreen, "LAN-zone connection closed"),
			ev(leave.Add(45*time.Second), schema.EventStatusChanged, schema.SeverityInfo, schema.StatusGreen, schema.StatusOffline, "no heartbeat and no traffic"))
		binds = append(binds, timed[schema.Binding]{arrive, schema.Binding{MAC: mac, IP: ip, Hostname: name, Source: "dhcp", Time: arrive}})
		for at := arrive.Add(2 * time.Hour); at.Before(leave); at = at.Add(2 * time.Hour) {
			binds = append(binds, timed[schema.Binding]{at, schema.Binding{MAC: mac, IP: ip, Source: "arp", Time: at}})
		}
		span := leave.Sub(arrive)
		for k := 0; k < cfg.TrafficMinutes; k++ {
			at := arrive.Add(time.Duration(r.Int64N(int64(span)))).Truncate(time.Minute)
			p := uint64(10 + r.IntN(1000))
			traffic = append(traffic, timed[schema.TrafficSummary]{at, schema.TrafficSummary{
				MAC: mac, IPs: []netip.Addr{ip}, Packets: p, Bytes: p * 600, FirstSeen: at, LastSeen: at.Add(50 * time.Second)}})
		}
	}
	// Unmanaged devices: a DHCP lease with a host name, traffic, then the verdict.
	for u := 0; u < cfg.UnmanagedPerDay; u++ {
		r := rand.New(rand.NewPCG(cfg.Seed^uint64(d)<<32^0xbad, uint64(u)))
		mac := schema.MACFromUint64(0x022000000000 + uint64(d)<<12 + uint64(u))
		ip := netip.AddrFrom4([4]byte{192, 168, byte(u >> 8), byte(u)})
		at := time.Unix(int64(d)*86400, 0).UTC().Add(8*time.Hour + time.Duration(r.Int64N(int64(8*time.Hour))))
		binds = append(binds, timed[schema.Binding]{at, schema.Binding{MAC: mac, IP: ip, Hostname: fmt.Sprintf("device-%d-%d", d, u), Source: "dhcp", Time: at}})
		traffic = append(traffic, timed[schema.TrafficSummary]{at, schema.TrafficSummary{MAC: mac, IPs: []netip.Addr{ip}, Packets: 50, Bytes: 5000, FirstSeen: at, LastSeen: at.Add(20 * time.Second)}})
		evs = append(evs, schema.Event{
			Time: at.Add(30 * time.Second), Type: schema.EventNoHeartbeat, Severity: schema.SeverityWarning,
			MACs: []schema.MAC{mac}, IPs: []netip.Addr{ip}, Status: schema.StatusNoHeartbeat,
			Reason:  fmt.Sprintf("MAC %s sends traffic and belongs to no enrolled endpoint", mac),
			Details: &schema.NoHeartbeatDetails{FirstSeen: at, Packets: 50, Bytes: 5000},
		})
	}
	slices.SortStableFunc(binds, func(a, b timed[schema.Binding]) int { return a.t.Compare(b.t) })
	slices.SortStableFunc(traffic, func(a, b timed[schema.TrafficSummary]) int { return a.t.Compare(b.t) })
	return evs, binds, traffic
}

// DayEvents returns day d's events (days since the epoch), sorted by time
// and not yet numbered.
func (c Config) DayEvents(d uint32) []schema.Event {
	evs, _, _ := c.withDefaults().day(d)
	slices.SortStableFunc(evs, func(a, b schema.Event) int { return a.Time.Compare(b.Time) })
	return evs
}
