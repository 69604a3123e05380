package inventory

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// WatchConfig sets what a Watcher reports.
type WatchConfig struct {
	// LearningPeriod: MACs first seen within it of the learning start are
	// learnt silently; new_station is raised for MACs first seen after it.
	LearningPeriod time.Duration
	// FlipWindow: an IP claimed by a new MAC raises ip_mac_changed when
	// the previous MAC claimed it within this window (an address reassigned
	// long after its last holder left is not a flip flop). Default 1 h.
	FlipWindow time.Duration
	// Vendors names vendors in the events; may be nil.
	Vendors *Vendors
	// Owner names the enrolled endpoint a MAC belongs to ("" for none).
	Owner func(schema.MAC) (id, name string)
}

// Watcher raises arpwatch's two events from what capture reports:
// new_station for a MAC seen for the first time after the learning
// period, and ip_mac_changed when an IP moves from one MAC to another. It
// is pure: times come from the inputs, and the MACs it learns are handed
// back for the caller to persist. It is safe for concurrent use.
type Watcher struct {
	cfg     WatchConfig
	learnTo time.Time

	mu     sync.Mutex
	seen   map[schema.MAC]struct{}
	claims map[netip.Addr]claim
}

type claim struct {
	mac  schema.MAC
	last time.Time
}

// Seen is a MAC learnt, to persist.
type Seen struct {
	MAC       schema.MAC
	FirstSeen time.Time
}

// NewWatcher returns a watcher whose learning period started at
// learningStart and that already knows the MACs in known.
func NewWatcher(cfg WatchConfig, learningStart time.Time, known []schema.MAC) *Watcher {
	if cfg.FlipWindow <= 0 {
		cfg.FlipWindow = time.Hour
	}
	w := &Watcher{cfg: cfg, learnTo: learningStart.Add(cfg.LearningPeriod),
		seen: make(map[schema.MAC]struct{}, len(known)), claims: map[netip.Addr]claim{}}
	for _, m := range known {
		w.seen[m] = struct{}{}
	}
	return w
}

// Traffic notes the MACs that sent traffic; it returns new_station events
// and the MACs learnt.
func (w *Watcher) Traffic(batch []schema.TrafficSummary) ([]schema.Event, []Seen) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var evs []schema.Event
	var learnt []Seen
	for _, t := range batch {
		if t.MAC.IsGroup() || t.MAC.IsZero() {
			continue
		}
		if _, ok := w.seen[t.MAC]; ok {
			continue
		}
		w.seen[t.MAC] = struct{}{}
		learnt = append(learnt, Seen{MAC: t.MAC, FirstSeen: t.FirstSeen})
		if t.FirstSeen.Before(w.learnTo) {
			continue
		}
		var ip netip.Addr
		if len(t.IPs) > 0 {
			ip = t.IPs[0]
		}
		evs = append(evs, w.newStation(t.MAC, ip, "", t.FirstSeen))
	}
	return evs, learnt
}

func (w *Watcher) newStation(m schema.MAC, ip netip.Addr, host string, at time.Time) schema.Event {
	d := &schema.NewStationDetails{MAC: m, Vendor: w.label(m), IP: ip, Hostname: host, FirstSeen: at}
	ev := schema.Event{Time: at, Type: schema.EventNewStation, Severity: schema.SeverityNotice,
		MACs: []schema.MAC{m}, Details: d,
		Reason: fmt.Sprintf("new station %s (%s)", m, orUnknown(d.Vendor))}
	if ip.IsValid() {
		ev.IPs = []netip.Addr{ip}
	}
	if w.cfg.Owner != nil {
		ev.EndpointID, ev.EndpointName = w.cfg.Owner(m)
	}
	return ev
}

// Bindings notes IP claims (ARP, DHCP, NDP and hellos; addresses merely
// seen as traffic sources are left out, since a router forwards many) and
// returns ip_mac_changed events.
func (w *Watcher) Bindings(bs []schema.Binding) []schema.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var evs []schema.Event
	for _, b := range bs {
		if b.Source == "traffic" || b.MAC.IsGroup() || b.MAC.IsZero() || !b.IP.IsValid() || b.IP.IsUnspecified() {
			continue
		}
		prev, ok := w.claims[b.IP]
		w.claims[b.IP] = claim{mac: b.MAC, last: b.Time}
		if !ok || prev.mac == b.MAC || b.Time.Sub(prev.last) > w.cfg.FlipWindow {
			continue
		}
		d := &schema.IPMACChangedDetails{IP: b.IP, OldMAC: prev.mac, OldVendor: w.label(prev.mac), OldLastSeen: prev.last,
			NewMAC: b.MAC, NewVendor: w.label(b.MAC), Source: b.Source}
		if w.cfg.Owner != nil {
			d.OldEndpointID, d.OldEndpointName = w.cfg.Owner(prev.mac)
			d.NewEndpointID, d.NewEndpointName = w.cfg.Owner(b.MAC)
		}
		evs = append(evs, schema.Event{Time: b.Time, Type: schema.EventIPMACChanged, Severity: schema.SeverityWarning,
			EndpointID: d.NewEndpointID, EndpointName: d.NewEndpointName,
			MACs: []schema.MAC{b.MAC, prev.mac}, IPs: []netip.Addr{b.IP}, Details: d,
			Reason: fmt.Sprintf("%s moved from %s (%s) to %s (%s)", b.IP, prev.mac, orUnknown(d.OldVendor), b.MAC, orUnknown(d.NewVendor))})
	}
	// Forget claims long past the window so the map stays bounded by the
	// addresses in use.
	if len(w.claims) > 1<<16 && len(bs) > 0 {
		cut := bs[len(bs)-1].Time.Add(-w.cfg.FlipWindow)
		for ip, c := range w.claims {
			if c.last.Before(cut) {
				delete(w.claims, ip)
			}
		}
	}
	return evs
}

func (w *Watcher) label(m schema.MAC) string {
	if w.cfg.Vendors == nil {
		return ""
	}
	return w.cfg.Vendors.Label(m)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown vendor"
	}
	return s
}
