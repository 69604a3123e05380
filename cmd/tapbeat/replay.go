package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/capture"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// replayEngine is a capture.Sink that feeds a correlator whose clock is
// the packets' time. The correlator starts at the first summary.
type replayEngine struct {
	clock  *sensor.ManualClock
	eng    *sensor.Engine
	events []schema.Event
	err    error
}

func (r *replayEngine) start(t time.Time) bool {
	if r.eng != nil || r.err != nil {
		return r.err == nil
	}
	r.clock.Set(t)
	corr, err := sensor.NewCorrelator(sensor.DefaultConfig(), r.clock)
	if err != nil {
		r.err = fmt.Errorf("start correlator: %w", err)
		return false
	}
	r.eng = sensor.NewEngine(corr, func(evs []schema.Event) { r.events = append(r.events, evs...) })
	return true
}

func (r *replayEngine) advance(t time.Time) {
	if t.After(r.clock.Now()) {
		r.clock.Set(t)
	}
}

// Traffic moves the clock to the newest packet of the batch, reports the
// capture healthy, passes the summaries on and applies the time rules.
func (r *replayEngine) Traffic(batch []schema.TrafficSummary) {
	first, last := batch[0].FirstSeen, batch[0].LastSeen
	var pkts uint64
	for _, s := range batch {
		if s.FirstSeen.Before(first) {
			first = s.FirstSeen
		}
		if s.LastSeen.After(last) {
			last = s.LastSeen
		}
		pkts += s.Packets
	}
	if !r.start(first) {
		return
	}
	r.advance(last)
	r.eng.CaptureHealth(schema.CaptureHealth{Interface: "replay", Up: true, Packets: pkts, Time: last})
	r.eng.Traffic(batch)
	r.eng.Tick()
}

// FlowStarts passes flow starts on.
func (r *replayEngine) FlowStarts(flows []schema.Flow) {
	if !r.start(flows[0].Time) {
		return
	}
	r.eng.FlowStarts(flows)
}

// CaptureHealth is not used in replay: Traffic reports health.
func (r *replayEngine) CaptureHealth(schema.CaptureHealth) {}

// Bindings are not the correlator's input.
func (r *replayEngine) Bindings([]schema.Binding) {}

func writeEvents(w io.Writer, evs []schema.Event) error {
	enc := json.NewEncoder(w)
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
	}
	return nil
}

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "run a pcap or pcapng file through the capture pipeline and print what each MAC did",
		Description: "Reads FILE (pcap or pcapng of Ethernet frames, gzip allowed) with packet timestamps as\n" +
			"the clock and prints one row (table) or one JSON object per line (json) per MAC: frames\n" +
			"and wire bytes it sent (packets, bytes) and received (rx_packets, rx_bytes), source\n" +
			"addresses, first and last time seen, and DHCP host names. With --events it runs the\n" +
			"correlator instead and prints its events. A truncated or corrupt file\n" +
			"prints the results so far and then fails naming the byte offset where it broke.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pcap", Usage: "capture `FILE` to read", Required: true},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json (one object per line)"},
			&cli.IntFlag{Name: "lan-port", Value: capture.DefaultLANPort, Usage: "the sensor's LAN-zone TCP port, for heartbeat-channel flows"},
			&cli.BoolFlag{Name: "events", Usage: "run the correlator (default rules, no enrolled endpoints) with packet timestamps as its clock and print its events, one JSON object per line, instead of the per-MAC table"},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			src, err := capture.OpenFile(c.String("pcap"))
			if err != nil {
				return err
			}
			defer src.Close()
			opts := capture.Options{LANPort: c.Int("lan-port")}
			if c.Bool("events") {
				re := &replayEngine{clock: &sensor.ManualClock{}}
				_, rerr := capture.Replay(c.Context, src, re, opts)
				return errors.Join(re.err, writeEvents(c.App.Writer, re.events), rerr)
			}
			rep, rerr := capture.Replay(c.Context, src, nil, opts)
			var werr error
			if format == "json" {
				werr = writeReplayJSON(c.App.Writer, rep)
			} else {
				werr = writeReplayTable(c.App.Writer, rep)
			}
			return errors.Join(rerr, werr)
		},
	}
}

func writeReplayJSON(w io.Writer, rep *capture.Report) error {
	enc := json.NewEncoder(w)
	for i := range rep.MACs {
		if err := enc.Encode(&rep.MACs[i]); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	}
	return nil
}

func writeReplayTable(w io.Writer, rep *capture.Report) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tPACKETS\tBYTES\tRX_PACKETS\tRX_BYTES\tFIRST_SEEN\tLAST_SEEN\tIPS\tHOSTNAMES")
	for _, m := range rep.MACs {
		ips := make([]string, len(m.IPs))
		for i, ip := range m.IPs {
			ips[i] = netip.Addr.String(ip)
		}
		if m.IPsNotListed > 0 {
			ips = append(ips, fmt.Sprintf("(+%d more)", m.IPsNotListed))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", m.MAC, m.Packets, m.Bytes,
			m.RxPackets, m.RxBytes, m.FirstSeen.Format(time.RFC3339Nano), m.LastSeen.Format(time.RFC3339Nano),
			dash(strings.Join(ips, ",")), dash(strings.Join(m.Hostnames, ",")))
	}
	fmt.Fprintf(tw, "\n%d records, %d frames, %d bytes, %d too short for Ethernet, %d flow starts, %d MACs\n",
		rep.Records, rep.Packets, rep.Bytes, rep.Runts, rep.Flows, len(rep.MACs))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
