// Package status gathers and draws the appliance's console status screen:
// addresses, the capture NICs' counters and rates, whether tapbeat run is up
// and ready, endpoints by status and alerts in the last hour (from the
// daemon's Prometheus metrics on loopback).
package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/appliance/supervise"
)

// NIC is one NIC's line on the screen.
type NIC struct {
	Role    string // "mgmt" or "capture"
	Name    string
	MAC     string
	Address string // management address, "" for capture NICs
	Up      bool
	// Counters from /sys/class/net/NAME/statistics.
	RxPackets, RxDropped, TxPackets uint64
	// RxRate is received frames per second since the previous sample.
	RxRate float64
}

// Sensor is what the daemon reports through its metrics.
type Sensor struct {
	// Endpoints counts enrolled endpoints by status.
	Endpoints map[string]int
	// Unmanaged counts MACs seen sending without an enrolled endpoint;
	// UnmanagedKnown is false when the daemon does not report it.
	Unmanaged      int
	UnmanagedKnown bool
	// Alerts1h counts alerts raised in the last hour.
	Alerts1h int
}

// Snapshot is one frame of the status screen.
type Snapshot struct {
	Time     time.Time
	Hostname string
	Version  string
	Uptime   time.Duration
	// Notices are shown first, in full (first-boot instructions, errors).
	Notices []string
	NICs    []NIC
	Daemon  supervise.State
	// Sensor is nil while the daemon's metrics cannot be read.
	Sensor *Sensor
}

// Render draws s as plain text for an 80x25 console.
func Render(w io.Writer, s Snapshot) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tapbeat appliance %s  host %s  up %s  %s\n", s.Version, s.Hostname, s.Uptime.Truncate(time.Second), s.Time.UTC().Format("2006-01-02 15:04:05Z"))
	b.WriteString(strings.Repeat("=", 78) + "\n")
	for _, n := range s.Notices {
		b.WriteString(n)
		if !strings.HasSuffix(n, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	for _, n := range s.NICs {
		state := "down"
		if n.Up {
			state = "up"
		}
		switch n.Role {
		case "mgmt":
			addr := n.Address
			if addr == "" {
				addr = "no address yet"
			}
			fmt.Fprintf(&b, "mgmt     %-6s %s %-4s %s\n", n.Name, n.MAC, state, addr)
		default:
			fmt.Fprintf(&b, "capture  %-6s %s %-4s %7.0f fps rx %d drop %d tx %d\n", n.Name, n.MAC, state, n.RxRate, n.RxPackets, n.RxDropped, n.TxPackets)
		}
	}
	d := s.Daemon
	switch {
	case d.Running && d.Ready:
		fmt.Fprintf(&b, "sensor   ready (pid %d, up %s, starts %d)\n", d.PID, s.Time.Sub(d.Since).Truncate(time.Second), d.Starts)
	case d.Running:
		fmt.Fprintf(&b, "sensor   starting (pid %d, starts %d)\n", d.PID, d.Starts)
	case d.Starts == 0:
		b.WriteString("sensor   not started\n")
	default:
		fmt.Fprintf(&b, "sensor   DOWN: %s; restart in %s\n", d.LastExit, time.Until(d.NextStart).Truncate(time.Second))
	}
	if s.Sensor != nil {
		keys := make([]string, 0, len(s.Sensor.Endpoints))
		total := 0
		for k, v := range s.Sensor.Endpoints {
			keys = append(keys, k)
			total += v
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.Sensor.Endpoints[k]))
		}
		fmt.Fprintf(&b, "endpoints %d: %s\n", total, strings.Join(parts, ", "))
		if s.Sensor.UnmanagedKnown {
			fmt.Fprintf(&b, "unmanaged MACs %d   ", s.Sensor.Unmanaged)
		}
		fmt.Fprintf(&b, "alerts in the last hour %d\n", s.Sensor.Alerts1h)
	} else if d.Ready {
		b.WriteString("endpoints: metrics not available yet\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
