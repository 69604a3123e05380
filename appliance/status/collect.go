package status

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names the status screen reads from tapbeat run's /metrics.
const (
	// MetricEndpoints is a gauge of enrolled endpoints with a "status" label.
	MetricEndpoints = "tapbeat_endpoints"
	// MetricUnmanaged is a gauge of MACs sending without a heartbeat
	// (optional: the line is left out when the daemon does not export it).
	MetricUnmanaged = "tapbeat_unmanaged_macs"
	// MetricEvents counts stored events with "type" and "severity" labels;
	// those of severity notice or worse are alerts.
	MetricEvents = "tapbeat_events_total"
)

// alertSeverities are the RFC 5424 severities that make an event an alert.
var alertSeverities = map[string]bool{
	"emergency": true, "alert": true, "critical": true, "error": true, "warning": true, "notice": true,
}

// ReadCounter reads one counter file such as
// /sys/class/net/eth1/statistics/rx_packets.
func ReadCounter(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %s: %w", path, err)
	}
	return v, nil
}

// NICCounters fills n's counters and up state from sysClassNet (normally
// /sys/class/net).
func NICCounters(sysClassNet string, n *NIC) error {
	dir := filepath.Join(sysClassNet, n.Name)
	var err error
	if n.RxPackets, err = ReadCounter(filepath.Join(dir, "statistics/rx_packets")); err != nil {
		return err
	}
	if n.RxDropped, err = ReadCounter(filepath.Join(dir, "statistics/rx_dropped")); err != nil {
		return err
	}
	if n.TxPackets, err = ReadCounter(filepath.Join(dir, "statistics/tx_packets")); err != nil {
		return err
	}
	op, _ := os.ReadFile(filepath.Join(dir, "operstate"))
	n.Up = strings.TrimSpace(string(op)) == "up"
	return nil
}

// Rates turns successive counter samples into frames per second per NIC.
type Rates struct {
	last map[string]sample
}

type sample struct {
	at time.Time
	v  uint64
}

// Update sets n.RxRate from the previous sample of the same NIC.
func (r *Rates) Update(at time.Time, n *NIC) {
	if r.last == nil {
		r.last = map[string]sample{}
	}
	if p, ok := r.last[n.Name]; ok && at.After(p.at) && n.RxPackets >= p.v {
		n.RxRate = float64(n.RxPackets-p.v) / at.Sub(p.at).Seconds()
	}
	r.last[n.Name] = sample{at, n.RxPackets}
}

// AlertWindow keeps samples of the alert counter to answer "alerts in the
// last hour" from a monotonic counter.
type AlertWindow struct {
	Window  time.Duration
	samples []sample
}

// Add records the counter value v at time at and returns the increase over
// the window (counter resets, when the daemon restarts, are handled by
// summing only increases).
func (a *AlertWindow) Add(at time.Time, v uint64) int {
	if a.Window <= 0 {
		a.Window = time.Hour
	}
	a.samples = append(a.samples, sample{at, v})
	cut := 0
	for cut < len(a.samples)-1 && at.Sub(a.samples[cut].at) > a.Window {
		cut++
	}
	a.samples = a.samples[cut:]
	total := 0
	for i := 1; i < len(a.samples); i++ {
		prev, cur := a.samples[i-1].v, a.samples[i].v
		if cur >= prev {
			total += int(cur - prev)
		} else {
			total += int(cur) // the daemon restarted and its counter began again
		}
	}
	return total
}

// ParseMetrics reads a Prometheus text exposition and returns the sensor
// figures with alertsTotal, the current value of the alert counter.
func ParseMetrics(text string) (s Sensor, alertsTotal uint64, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return Sensor{}, 0, fmt.Errorf("parse metrics: %w", err)
	}
	s.Endpoints = map[string]int{}
	if f, ok := fams[MetricEndpoints]; ok {
		for _, m := range f.GetMetric() {
			st := label(m, "status")
			if st == "" {
				st = "all"
			}
			s.Endpoints[st] += int(value(m))
		}
	}
	if f, ok := fams[MetricUnmanaged]; ok {
		s.UnmanagedKnown = true
		for _, m := range f.GetMetric() {
			s.Unmanaged += int(value(m))
		}
	}
	if f, ok := fams[MetricEvents]; ok {
		for _, m := range f.GetMetric() {
			if alertSeverities[label(m, "severity")] {
				alertsTotal += uint64(value(m))
			}
		}
	}
	return s, alertsTotal, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// Scrape fetches url (the daemon's /metrics on loopback) and parses it.
func Scrape(ctx context.Context, url string) (Sensor, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Sensor{}, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Sensor{}, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sensor{}, 0, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Sensor{}, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	return ParseMetrics(string(body))
}
