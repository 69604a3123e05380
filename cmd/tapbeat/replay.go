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
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "run a pcap or pcapng file through the capture pipeline and print what each MAC did",
		Description: "Reads FILE (pcap or pcapng of Ethernet frames, gzip allowed) with packet timestamps as\n" +
			"the clock and prints one row (table) or one JSON object per line (json) per MAC: frames\n" +
			"and wire bytes it sent (packets, bytes) and received (rx_packets, rx_bytes), source\n" +
			"addresses, first and last time seen, and DHCP host names. A truncated or corrupt file\n" +
			"prints the results so far and then fails naming the byte offset where it broke.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pcap", Usage: "capture `FILE` to read", Required: true},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json (one object per line)"},
			&cli.IntFlag{Name: "lan-port", Value: capture.DefaultLANPort, Usage: "the sensor's LAN-zone TCP port, for heartbeat-channel flows"},
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
			rep, rerr := capture.Replay(c.Context, src, nil, capture.Options{LANPort: c.Int("lan-port")})
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
