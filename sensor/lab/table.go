package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes a human-readable description of the lab to w: a
// header line, then one line per interface. Namespaces that no longer
// exist are reported after the table.
func (s *State) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "lab %s  subnet %s  created %s  state %s\n", s.Name, s.Subnet, s.Created.Format(time.RFC3339), StatePath(s.StateDir, s.Name))
	if len(s.Routes) > 0 {
		routes := make([]string, len(s.Routes))
		for i, r := range s.Routes {
			routes[i] = r.String()
		}
		fmt.Fprintf(tw, "joined: hosts route %s on-link\n", strings.Join(routes, ", "))
	}
	fmt.Fprintln(tw, "HOST\tNAMESPACE\tINTERFACE\tSWITCH PORT\tMAC\tIPV4\tLINK-LOCAL\tROLE")
	lan := s.Sensor.LAN
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", HostSensor, s.Sensor.Namespace, lan.Name, s.portName(lan), lan.MAC, lan.Addr, addrOrDash(lan), "sensor LAN (listener)")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", HostSensor, s.Sensor.Namespace, s.Sensor.Mirror, s.Switch.Span, "-", "-", "-", "mirror capture")
	for _, e := range s.Endpoints {
		role := "endpoint (agent)"
		if !e.Managed {
			role = "endpoint (unmanaged)"
		}
		for _, i := range e.Interfaces {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Namespace, i.Name, s.portName(i), i.MAC, i.Addr, addrOrDash(i), role)
		}
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", HostSwitch, s.Switch.Namespace, s.Switch.Bridge, "-", "-", "-", "-", "switch")
	for _, t := range s.Trunks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", HostSwitch, s.Switch.Namespace, "-", t.Port, "-", "-", "-", "trunk to lab "+t.Peer+" ("+t.PeerPort+")")
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write lab table: %w", err)
	}
	if missing := s.MissingNamespaces(); len(missing) > 0 {
		_, err := fmt.Fprintf(w, "BROKEN: namespaces %s are missing; take the lab down and up again\n", strings.Join(missing, ", "))
		return err
	}
	return nil
}

// portName is the interface's bridge port, with the switch's namespace
// when the port has moved to another lab's switch.
func (s *State) portName(i Interface) string {
	if sw := s.PortSwitch(i); sw != s.Switch.Namespace {
		return i.Port + "@" + sw
	}
	return i.Port
}

func addrOrDash(i Interface) string {
	if !i.LinkLocal.IsValid() {
		return "-"
	}
	return i.LinkLocal.String()
}

// MissingNamespaces lists the lab's namespaces that do not exist.
func (s *State) MissingNamespaces() []string {
	var missing []string
	for _, ns := range s.Namespaces() {
		if !namespaceExists(ns) {
			missing = append(missing, ns)
		}
	}
	return missing
}
