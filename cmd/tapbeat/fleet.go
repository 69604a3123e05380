package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/sensor/fleet"
)

func fleetCommand() *cli.Command {
	return &cli.Command{
		Name:  "fleet",
		Usage: "several sensors sharing enrollment, heartbeat state and verdicts",
		Subcommands: []*cli.Command{
			{
				Name:  "add",
				Usage: "issue what a new sensor needs to join this sensor's fleet, in one 0600 file",
				Description: "Writes NAME.fleet.json: the organisation's CA (certificate and key: every fleet sensor\n" +
					"can enroll), the fleet's LAN-zone key with a certificate for the new sensor's --lan\n" +
					"addresses (agents' pins stay valid on every sensor), the new sensor's fleet certificate,\n" +
					"and the fleet addresses of the sensors already there. Keep it like the CA key; copy it\n" +
					"to the new sensor and run `tapbeat init --dir DIR --join NAME.fleet.json` there.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Usage: "this sensor's state `DIR`", Required: true},
					&cli.StringFlag{Name: "name", Usage: "the new sensor's `NAME`", Required: true},
					&cli.StringFlag{Name: "lan", Usage: "the new sensor's LAN-zone `ADDR[,ADDR...]`", Required: true},
					&cli.StringFlag{Name: "fleet-addr", Usage: "the new sensor's fleet address `HOST:PORT` (port 7422 by default)", Required: true},
					&cli.StringFlag{Name: "out", Usage: "output `FILE` (default NAME.fleet.json)"},
				},
				Action: func(c *cli.Context) error {
					addrs, err := config.ParseAddresses(c.String("lan"))
					if err != nil {
						return err
					}
					ips := make([]netip.Addr, len(addrs))
					for i, a := range addrs {
						ips[i] = netip.MustParseAddr(a)
					}
					j, err := fleet.AddSensor(c.String("dir"), c.String("name"), ips, c.String("fleet-addr"))
					if err != nil {
						return err
					}
					out := c.String("out")
					if out == "" {
						out = c.String("name") + ".fleet.json"
					}
					if err := j.WriteFile(out); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "wrote %s for sensor %s (fleet address %s, peers %s)\nnext, on the new sensor: tapbeat init --dir DIR --join %s\n",
						out, j.Name, j.FleetAddr, strings.Join(j.Peers, ","), out)
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "the fleet's sensors, health, streams and buckets, endpoints per sensor",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR` (of a running sensor)", Required: true},
					&cli.StringFlag{Name: "format", Value: "table", Usage: "`table` or json"},
				},
				Action: func(c *cli.Context) error {
					dir := c.String("dir")
					cfg, err := fleet.Load(dir)
					if err != nil {
						return err
					}
					if !cfg.Enabled() {
						return fmt.Errorf("%s is not a fleet sensor: set its fleet address with `tapbeat config set --dir %s fleet-addr HOST:PORT`", dir, dir)
					}
					nc, err := fleet.Dial(dir, cfg)
					if err != nil {
						return err
					}
					defer nc.Close()
					st, err := fleet.ReadStatus(c.Context, nc, cfg.Name)
					if err != nil {
						return err
					}
					switch c.String("format") {
					case "json":
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(st)
					case "table":
						return writeFleetStatus(c, st)
					default:
						return fmt.Errorf("--format %q: want table or json", c.String("format"))
					}
				},
			},
		},
	}
}

func writeFleetStatus(c *cli.Context, st *fleet.Status) error {
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	health := "healthy"
	if !st.Healthy {
		health = "DEGRADED"
	}
	fmt.Fprintf(w, "fleet seen from %s: %s\n\n", st.Sensor, health)
	fmt.Fprintln(w, "SENSOR\tREACHABLE\tFLEET ADDR\tLAN ZONE\tENDPOINTS\tCLOCK SKEW\tLAST SEEN")
	for _, s := range st.Sensors {
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%d\t%v\t%s\n", s.Name, s.Reachable, s.FleetAddr, strings.Join(s.LAN, ","),
			st.Endpoints[s.Name], s.ClockSkew.Round(time.Millisecond), s.LastSeen.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "\nSTREAM\tREPLICAS\tLEADER\tCURRENT\tLAGGING\tMESSAGES\tMAX LAG")
	for _, a := range st.Assets {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\t%d\n", a.Name, a.Replicas, orDash(a.Leader), orDash(strings.Join(a.Current, ",")),
			orDash(strings.Join(a.Lagging, ",")), a.Messages, a.MaxLag)
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "\nproblem: %s", p)
	}
	fmt.Fprintln(w)
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// joinAction prepares a directory from a fleet join file (`init --join`).
func joinAction(c *cli.Context) error {
	j, err := fleet.ReadJoinFile(c.String("join"))
	if err != nil {
		return err
	}
	if c.IsSet("org") && c.String("org") != j.Org {
		return fmt.Errorf("--org %q but the fleet file is for %q: a sensor joins its own organisation's fleet only", c.String("org"), j.Org)
	}
	dir := c.String("dir")
	if err := fleet.Join(dir, j); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "initialised %s as fleet sensor %s of %s\n  LAN zone: %v\n  fleet address: %s, peers %s\nnext: tapbeat run --dir %s ...\n",
		dir, j.Name, j.Org, j.LAN, j.FleetAddr, strings.Join(j.Peers, ","), dir)
	return nil
}

func setFleetAddr(c *cli.Context, dir, val string) error {
	cfg, err := fleet.SetAddr(dir, c.String("fleet-name"), val)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "fleet sensor %s, fleet address %s (routes over mutual TLS; open this port to the other sensors)\n", cfg.Name, cfg.Addr)
	return nil
}
