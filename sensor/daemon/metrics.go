package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// metrics exposes the sensor's counters to Prometheus and answers /healthz.
// Its registry is its own (no global registry).
type metrics struct {
	s        *Sensor
	reg      *prometheus.Registry
	alerts   *prometheus.CounterVec
	packets  *prometheus.CounterVec
	drops    *prometheus.CounterVec
	linkUp   *prometheus.GaugeVec
	mu       sync.Mutex
	captures map[string]schema.CaptureHealth // latest report per interface
}

func newMetrics(s *Sensor) *metrics {
	m := &metrics{
		s:   s,
		reg: prometheus.NewRegistry(),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapbeat_events_total", Help: "Events stored, by type and severity.",
		}, []string{"type", "severity"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapbeat_capture_packets_total", Help: "Frames the kernel handled per capture interface, drops included.",
		}, []string{"interface"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tapbeat_capture_drops_total", Help: "Frames the kernel dropped per capture interface.",
		}, []string{"interface"}),
		linkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tapbeat_capture_up", Help: "1 while the capture interface is up and read.",
		}, []string{"interface"}),
		captures: map[string]schema.CaptureHealth{},
	}
	m.reg.MustRegister(m.alerts, m.packets, m.drops, m.linkUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tapbeat_lanzone_connections", Help: "Endpoints connected to the LAN zone.",
	}, func() float64 {
		if s.listener == nil {
			return 0
		}
		return float64(s.listener.Connected())
	}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tapbeat_outbox_backlog", Help: "Alerts waiting in the outbox for at least one destination.",
	}, func() float64 {
		s.mu.Lock()
		ob := s.outbox
		s.mu.Unlock()
		if ob == nil {
			return 0
		}
		return float64(ob.Len())
	}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tapbeat_event_queue", Help: "Events waiting to be stored.",
	}, func() float64 { return float64(s.queue.len()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tapbeat_history_bytes", Help: "Size of the history database on disk (LSM and value log).",
	}, func() float64 {
		if s.store == nil {
			return 0
		}
		lsm, vlog := s.store.Size()
		return float64(lsm + vlog)
	}))
	m.reg.MustRegister(&endpointCollector{s: s, desc: prometheus.NewDesc(
		"tapbeat_endpoints", "Enrolled endpoints by status.", []string{"status"}, nil)})
	m.reg.MustRegister(&endedCollector{s: s, desc: prometheus.NewDesc(
		"tapbeat_lanzone_connections_ended_total", "Endpoint connections ended, by how they ended.", []string{"how"}, nil)})
	m.reg.MustRegister(&latencyCollector{s: s, desc: prometheus.NewDesc(
		"tapbeat_lanzone_heartbeat_latency_seconds", "Heartbeat latency from the agent's sent_at to the correlator's return.", nil, nil)})
	m.reg.MustRegister(newFleetTrafficCollector(s))
	return m
}

// observe counts stored events.
func (m *metrics) observe(evs []schema.Event) {
	for i := range evs {
		m.alerts.WithLabelValues(string(evs[i].Type), evs[i].Severity.String()).Inc()
	}
}

// capture records a capture interface's report.
func (m *metrics) capture(h schema.CaptureHealth) {
	m.packets.WithLabelValues(h.Interface).Add(float64(h.Packets))
	m.drops.WithLabelValues(h.Interface).Add(float64(h.Drops))
	up := 0.0
	if h.Up {
		up = 1
	}
	m.linkUp.WithLabelValues(h.Interface).Set(up)
	m.mu.Lock()
	m.captures[h.Interface] = h
	m.mu.Unlock()
}

// health is /healthz's answer.
type health struct {
	Status       string            `json:"status"` // "ok" or "degraded"
	Problems     []string          `json:"problems,omitempty"`
	StoredSeq    uint64            `json:"stored_seq"`
	QueuedEvents int               `json:"queued_events"`
	Connections  int               `json:"connections"`
	Endpoints    map[string]int    `json:"endpoints"`
	Capture      map[string]string `json:"capture,omitempty"`
}

func (m *metrics) health() health {
	h := health{Status: "ok", StoredSeq: m.s.stored.Load(), QueuedEvents: m.s.queue.len(), Endpoints: map[string]int{}}
	if m.s.listener != nil {
		h.Connections = m.s.listener.Connected()
	}
	for st, n := range m.s.engine.StatusCounts() {
		h.Endpoints[string(st)] = n
	}
	m.mu.Lock()
	for name, c := range m.captures {
		if h.Capture == nil {
			h.Capture = map[string]string{}
		}
		if c.Up {
			h.Capture[name] = "up"
		} else {
			h.Capture[name] = "down: " + c.Reason
			h.Problems = append(h.Problems, "capture interface "+name+" is down")
		}
	}
	m.mu.Unlock()
	if m.s.store != nil && errors.Is(m.s.store.RoomToWrite(), history.ErrDiskFull) {
		h.Problems = append(h.Problems, "history disk is full: events, bindings and traffic wait in memory")
	}
	if h.QueuedEvents > 10000 {
		h.Problems = append(h.Problems, "history is falling behind")
	}
	if len(h.Problems) > 0 {
		h.Status = "degraded"
	}
	return h
}

func (m *metrics) serve(ctx context.Context, ln net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		h := m.health()
		w.Header().Set("Content-Type", "application/json")
		if h.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	profiling(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "err", err)
	}
}

// endpointCollector counts endpoints by status at scrape time.
type endpointCollector struct {
	s    *Sensor
	desc *prometheus.Desc
}

func (c *endpointCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *endpointCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[schema.Status]int{}
	for _, st := range []schema.Status{schema.StatusGreen, schema.StatusYellow, schema.StatusRed,
		schema.StatusMissing, schema.StatusOffline, schema.StatusUnknown, schema.StatusStopped} {
		counts[st] = 0
	}
	if c.s.engine != nil {
		for st, n := range c.s.engine.StatusCounts() {
			counts[st] = n
		}
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(st))
	}
}

// endedCollector reports how the LAN zone's authenticated connections
// ended: goodbye, close_notify, eof, reset, ... (schema.DisconnectCause).
type endedCollector struct {
	s    *Sensor
	desc *prometheus.Desc
}

func (c *endedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *endedCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.listener == nil {
		return
	}
	for how, n := range c.s.listener.Stats().Ended {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), how)
	}
}

// latencyCollector exports the LAN zone's heartbeat-latency histogram
// (buckets 10 % apart from 10 µs), so a scraper can take percentiles over
// any window from two scrapes.
type latencyCollector struct {
	s    *Sensor
	desc *prometheus.Desc
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.listener == nil {
		return
	}
	bounds, counts, sum := c.s.listener.LatencyHistogram()
	cum := make(map[float64]uint64, len(bounds))
	var n uint64
	for i := range counts {
		n += counts[i]
		if i < len(counts)-1 { // the last bucket is open-ended: +Inf
			cum[bounds[i].Seconds()] = n
		}
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, n, sum.Seconds(), cum)
}

// fleetTrafficCollector exports the embedded fleet node's byte and message
// counters (cluster routes, and every connection of the node).
type fleetTrafficCollector struct {
	s                        *Sensor
	routeBytes, routeMsgs    *prometheus.Desc
	nodeBytes, routesCurrent *prometheus.Desc
}

func newFleetTrafficCollector(s *Sensor) *fleetTrafficCollector {
	dir := []string{"direction"}
	return &fleetTrafficCollector{s: s,
		routeBytes:    prometheus.NewDesc("tapbeat_fleet_route_bytes_total", "Bytes on the fleet node's open cluster routes to other sensors (NATS protocol level).", dir, nil),
		routeMsgs:     prometheus.NewDesc("tapbeat_fleet_route_messages_total", "Messages on the fleet node's open cluster routes to other sensors.", dir, nil),
		nodeBytes:     prometheus.NewDesc("tapbeat_fleet_node_bytes_total", "Bytes through the fleet node: routes and the sensor's own client.", dir, nil),
		routesCurrent: prometheus.NewDesc("tapbeat_fleet_routes", "Open cluster routes of the fleet node.", nil, nil),
	}
}

func (c *fleetTrafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.routeBytes
	ch <- c.routeMsgs
	ch <- c.nodeBytes
	ch <- c.routesCurrent
}

func (c *fleetTrafficCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.s.bridge.Load()
	if b == nil {
		return
	}
	t, ok := b.Traffic()
	if !ok {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, dir string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), dir)
	}
	counter(c.routeBytes, t.RouteInBytes, "in")
	counter(c.routeBytes, t.RouteOutBytes, "out")
	counter(c.routeMsgs, t.RouteInMsgs, "in")
	counter(c.routeMsgs, t.RouteOutMsgs, "out")
	counter(c.nodeBytes, t.InBytes, "in")
	counter(c.nodeBytes, t.OutBytes, "out")
	ch <- prometheus.MustNewConstMetric(c.routesCurrent, prometheus.GaugeValue, float64(t.Routes))
}
