package web

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// badRequest marks an error in the request's parameters.
type badRequest struct{ error }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// EndpointRow is one endpoint in the endpoints table.
type EndpointRow struct {
	schema.EndpointState
	HealthName string   `json:"health,omitempty"`
	Vendors    []string `json:"vendors,omitempty"` // per interface, in order
}

// EndpointPage is one page of the endpoints table.
type EndpointPage struct {
	Total     int            `json:"total"`  // endpoints matching the filter
	Page      int            `json:"page"`   // from 1
	Pages     int            `json:"pages"`  // at least 1
	Per       int            `json:"per"`    // rows per page
	Sort      string         `json:"sort"`   // column
	Desc      bool           `json:"desc"`   // descending
	Query     string         `json:"q"`      // text filter
	Status    string         `json:"status"` // status filter
	Counts    map[string]int `json:"counts"` // all endpoints by status
	Endpoints []EndpointRow  `json:"endpoints"`
}

var sortKeys = map[string]func(a, b *schema.EndpointState) int{
	"name":           func(a, b *schema.EndpointState) int { return cmp.Compare(a.Name, b.Name) },
	"id":             func(a, b *schema.EndpointState) int { return cmp.Compare(a.ID, b.ID) },
	"status":         func(a, b *schema.EndpointState) int { return cmp.Compare(statusRank(a.Status), statusRank(b.Status)) },
	"health":         func(a, b *schema.EndpointState) int { return cmp.Compare(a.Health, b.Health) },
	"last_heartbeat": func(a, b *schema.EndpointState) int { return a.LastHeartbeat.Compare(b.LastHeartbeat) },
}

// statusRank orders statuses worst first.
func statusRank(s schema.Status) int {
	switch s {
	case schema.StatusMissing:
		return 0
	case schema.StatusRed:
		return 1
	case schema.StatusYellow:
		return 2
	case schema.StatusUnknown:
		return 3
	case schema.StatusOffline:
		return 4
	case schema.StatusGreen:
		return 5
	}
	return 6
}

// endpointsQuery filters, sorts and pages the live endpoints.
func (s *Server) endpointsQuery(q url.Values) (EndpointPage, error) {
	p := EndpointPage{Sort: cmp.Or(q.Get("sort"), "status"), Desc: q.Get("desc") == "1",
		Query: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Page: 1, Per: 50, Counts: map[string]int{}}
	less, ok := sortKeys[p.Sort]
	if !ok {
		return p, badRequest{fmt.Errorf("sort=%q: want name, id, status, health or last_heartbeat", p.Sort)}
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, badRequest{fmt.Errorf("page=%q: want a number from 1", v)}
		}
		p.Page = n
	}
	if v := q.Get("per"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return p, badRequest{fmt.Errorf("per=%q: want 1-500", v)}
		}
		p.Per = n
	}
	all := s.o.Live.Endpoints()
	needle := strings.ToLower(p.Query)
	// Pointers are sorted, not the states: 10,000 swaps of a pointer cost
	// far less than of a struct.
	kept := make([]*schema.EndpointState, 0, len(all))
	for i := range all {
		e := &all[i]
		p.Counts[string(e.Status)]++
		if p.Status != "" && string(e.Status) != p.Status {
			continue
		}
		if needle != "" && !matches(e, needle) {
			continue
		}
		kept = append(kept, e)
	}
	slices.SortFunc(kept, func(a, b *schema.EndpointState) int {
		c := less(a, b)
		if c == 0 {
			c = cmp.Compare(a.Name, b.Name)
		}
		if p.Desc {
			return -c
		}
		return c
	})
	p.Total = len(kept)
	p.Pages = max(1, (p.Total+p.Per-1)/p.Per)
	p.Page = min(p.Page, p.Pages)
	from := (p.Page - 1) * p.Per
	to := min(from+p.Per, p.Total)
	p.Endpoints = make([]EndpointRow, 0, to-from)
	for _, e := range kept[from:to] {
		p.Endpoints = append(p.Endpoints, s.endpointRow(*e))
	}
	return p, nil
}

func (s *Server) endpointRow(e schema.EndpointState) EndpointRow {
	r := EndpointRow{EndpointState: e}
	if e.Health.Valid() {
		r.HealthName = e.Health.String()
	}
	for _, itf := range e.Interfaces {
		r.Vendors = append(r.Vendors, s.o.Vendors.Label(itf.MAC))
	}
	return r
}

func matches(e *schema.EndpointState, needle string) bool {
	if strings.Contains(strings.ToLower(e.Name), needle) || strings.Contains(strings.ToLower(e.ID), needle) {
		return true
	}
	for _, itf := range e.Interfaces {
		if strings.Contains(itf.MAC.String(), needle) {
			return true
		}
		for _, ip := range itf.IPs {
			if strings.Contains(ip.String(), needle) {
				return true
			}
		}
	}
	for _, u := range e.Users {
		if strings.Contains(strings.ToLower(u), needle) {
			return true
		}
	}
	return false
}

// Overview is the overview page's data.
type Overview struct {
	Now          time.Time      `json:"now"`
	Counts       map[string]int `json:"endpoints_by_status"`
	Total        int            `json:"endpoints"`
	AlertsByHour []HourCount    `json:"alerts_by_hour"`
	Unmanaged    int            `json:"unmanaged"`
	Sensor       SensorHealth   `json:"sensor"`
}

// HourCount counts alerts in one hour.
type HourCount struct {
	Hour   time.Time `json:"hour"`
	Alerts int       `json:"alerts"`
}

func (s *Server) overview() (Overview, error) {
	now := s.o.Now()
	o := Overview{Now: now, Counts: map[string]int{}}
	for st, n := range s.o.Live.StatusCounts() {
		o.Counts[string(st)] = n
		o.Total += n
	}
	start := now.Truncate(time.Hour).Add(-23 * time.Hour)
	evs, err := s.o.History.Alerts(history.AlertQuery{Range: history.Range{Since: start, Until: now}, Limit: history.DefaultLimit})
	if err != nil {
		return o, err
	}
	o.AlertsByHour = make([]HourCount, 24)
	for i := range o.AlertsByHour {
		o.AlertsByHour[i].Hour = start.Add(time.Duration(i) * time.Hour)
	}
	for _, ev := range evs {
		if i := int(ev.Time.Sub(start) / time.Hour); i >= 0 && i < 24 {
			o.AlertsByHour[i].Alerts++
		}
	}
	o.Unmanaged = len(s.o.Live.Unmanaged())
	if s.o.Health != nil {
		o.Sensor = s.o.Health()
	}
	return o, nil
}

// EndpointDetail is one endpoint's page.
type EndpointDetail struct {
	Endpoint EndpointRow    `json:"endpoint"`
	Timeline []StatusSpan   `json:"timeline"` // last 24 h
	Alerts   []schema.Event `json:"alerts"`
	Peers    []Peer         `json:"peers"`   // who it talked to in policy or lateral-movement alerts
	Traffic  []TrafficPoint `json:"traffic"` // bytes per minute, all its MACs, last 24 h
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
}

// StatusSpan is a stretch of time in one status.
type StatusSpan struct {
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Status schema.Status `json:"status"`
}

// Peer is the other end of a policy or lateral-movement alert.
type Peer struct {
	MAC    schema.MAC `json:"mac"`
	IP     netip.Addr `json:"ip,omitzero"`
	Name   string     `json:"name,omitempty"`
	Vendor string     `json:"vendor,omitempty"`
	Type   string     `json:"type"`
	Count  int        `json:"count"`
	Last   time.Time  `json:"last"`
}

// TrafficPoint is one minute of traffic.
type TrafficPoint struct {
	Minute time.Time `json:"minute"`
	Bytes  uint64    `json:"bytes"`
}

var errNotFound = errors.New("not found")

func (s *Server) endpointDetail(id string) (EndpointDetail, error) {
	var d EndpointDetail
	var found bool
	for _, e := range s.o.Live.Endpoints() {
		if e.ID == id {
			d.Endpoint, found = s.endpointRow(e), true
			break
		}
	}
	if !found {
		return d, fmt.Errorf("endpoint %q: %w", id, errNotFound)
	}
	d.To = s.o.Now()
	d.From = d.To.Add(-24 * time.Hour)
	rg := history.Range{Since: d.From, Until: d.To}
	evs, err := s.o.History.History(history.HistoryQuery{Range: rg, Endpoint: id, Limit: 2000})
	if err != nil {
		return d, err
	}
	cur := schema.Status("")
	at := d.From
	for _, ev := range evs {
		if ev.Status == "" || ev.Status == cur {
			continue
		}
		if cur == "" {
			cur = cmp.Or(ev.PreviousStatus, schema.StatusUnknown)
		}
		d.Timeline = append(d.Timeline, StatusSpan{From: at, To: ev.Time, Status: cur})
		cur, at = ev.Status, ev.Time
	}
	d.Timeline = append(d.Timeline, StatusSpan{From: at, To: d.To, Status: cmp.Or(d.Endpoint.Status, cur)})

	alerts, err := s.o.History.Alerts(history.AlertQuery{Range: history.Range{Since: d.To.Add(-7 * 24 * time.Hour)}, Endpoint: id, Limit: 200})
	if err != nil {
		return d, err
	}
	slices.Reverse(alerts)
	d.Alerts = alerts
	own := map[schema.MAC]bool{}
	for _, m := range d.Endpoint.MACs() {
		own[m] = true
	}
	peers := map[schema.MAC]*Peer{}
	for _, ev := range alerts {
		fd, ok := ev.Details.(*schema.FlowDetails)
		if !ok {
			continue
		}
		m, ip := fd.DstMAC, fd.DstIP
		if own[m] || (!own[fd.SrcMAC] && fd.Direction == "inbound") {
			m, ip = fd.SrcMAC, fd.SrcIP
		}
		p := peers[m]
		if p == nil {
			p = &Peer{MAC: m, IP: ip, Name: fd.Peer, Vendor: s.o.Vendors.Label(m), Type: string(ev.Type)}
			peers[m] = p
		}
		p.Count++
		if ev.Time.After(p.Last) {
			p.Last = ev.Time
		}
	}
	for _, p := range peers {
		d.Peers = append(d.Peers, *p)
	}
	slices.SortFunc(d.Peers, func(a, b Peer) int { return b.Last.Compare(a.Last) })

	byMinute := map[time.Time]uint64{}
	for _, m := range d.Endpoint.MACs() {
		tm, err := s.o.History.Traffic(history.TrafficQuery{Range: rg, MAC: m})
		if err != nil {
			return d, err
		}
		for _, t := range tm {
			byMinute[t.Minute] += t.Bytes
		}
	}
	for m, b := range byMinute {
		d.Traffic = append(d.Traffic, TrafficPoint{Minute: m, Bytes: b})
	}
	slices.SortFunc(d.Traffic, func(a, b TrafficPoint) int { return a.Minute.Compare(b.Minute) })
	return d, nil
}

// UnmanagedRow is a station without heartbeat with its vendor and triage.
type UnmanagedRow struct {
	history.Station
	Vendor string                 `json:"vendor"`
	Local  bool                   `json:"locally_administered"`
	Triage *inventory.TriageEntry `json:"triage,omitempty"`
}

func (s *Server) unmanaged(q url.Values) ([]UnmanagedRow, error) {
	var rg history.Range
	var err error
	if rg.Since, err = queryTime(q, "since"); err != nil {
		return nil, err
	}
	if rg.Until, err = queryTime(q, "until"); err != nil {
		return nil, err
	}
	if rg.Since.IsZero() {
		rg.Since = s.o.Now().Add(-7 * 24 * time.Hour)
	}
	sts, err := s.o.History.Unmanaged(rg)
	if err != nil {
		return nil, err
	}
	seen := map[schema.MAC]bool{}
	out := make([]UnmanagedRow, 0, len(sts))
	add := func(st history.Station) {
		r := UnmanagedRow{Station: st, Vendor: s.o.Vendors.Lookup(st.MAC), Local: inventory.IsLocal(st.MAC)}
		if e, ok := s.o.Triage.Get(st.MAC); ok {
			r.Triage = &e
		}
		out = append(out, r)
		seen[st.MAC] = true
	}
	for _, st := range sts {
		add(st)
	}
	// Stations the correlator holds that history has not written yet.
	for _, st := range s.o.Live.Unmanaged() {
		if !seen[st.MAC] {
			add(history.Station{MAC: st.MAC, IPs: st.IPs, FirstSeen: st.FirstSeen, LastSeen: st.LastSeen, Packets: st.Packets, Bytes: st.Bytes})
		}
	}
	slices.SortFunc(out, func(a, b UnmanagedRow) int { return b.LastSeen.Compare(a.LastSeen) })
	return out, nil
}

// AlertFilter is the alerts page's filter.
type AlertFilter struct {
	Types    string `json:"type"`
	Severity string `json:"severity"`
	Endpoint string `json:"endpoint"`
	Since    string `json:"since"`
	Until    string `json:"until"`
}

func (s *Server) alerts(q url.Values) (AlertFilter, []schema.Event, error) {
	f := AlertFilter{Types: q.Get("type"), Severity: q.Get("severity"), Endpoint: q.Get("endpoint"), Since: q.Get("since"), Until: q.Get("until")}
	aq := history.AlertQuery{Endpoint: f.Endpoint, Limit: 500}
	var err error
	if aq.Since, err = queryTime(q, "since"); err != nil {
		return f, nil, err
	}
	if aq.Until, err = queryTime(q, "until"); err != nil {
		return f, nil, err
	}
	if aq.Since.IsZero() {
		aq.Since = s.o.Now().Add(-7 * 24 * time.Hour)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, nil, badRequest{fmt.Errorf("limit=%q: want a positive number", v)}
		}
		aq.Limit = n
	}
	for _, t := range strings.Split(f.Types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			et, err := schema.ParseEventType(t)
			if err != nil {
				return f, nil, badRequest{err}
			}
			aq.Types = append(aq.Types, et)
		}
	}
	minSev := schema.SeverityDebug
	if f.Severity != "" {
		if minSev, err = schema.ParseSeverity(f.Severity); err != nil {
			return f, nil, badRequest{err}
		}
	}
	evs, err := s.o.History.Alerts(aq)
	if err != nil {
		return f, nil, err
	}
	out := evs[:0]
	for _, ev := range evs {
		if ev.Severity.AtLeast(minSev) {
			out = append(out, ev)
		}
	}
	slices.Reverse(out)
	return f, out, nil
}

// queryTime parses an RFC 3339 time, or a date and time as typed in a
// form ("2026-12-01T14:05", UTC).
func queryTime(q url.Values, name string) (time.Time, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badRequest{fmt.Errorf("%s=%q: want RFC 3339 or YYYY-MM-DDTHH:MM (UTC)", name, v)}
}

func (s *Server) who(q url.Values) (history.WhoAnswer, error) {
	ipText := strings.TrimSpace(q.Get("ip"))
	ip, err := netip.ParseAddr(ipText)
	if err != nil {
		return history.WhoAnswer{}, badRequest{fmt.Errorf("ip=%q: want an IPv4 or IPv6 address", ipText)}
	}
	at, err := queryTime(q, "at")
	if err != nil {
		return history.WhoAnswer{}, err
	}
	if at.IsZero() {
		at = s.o.Now()
	}
	return s.o.History.Who(ip, at)
}

func statusOf(err error) int {
	var br badRequest
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}
