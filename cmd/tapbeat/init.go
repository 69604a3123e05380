package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the organisation's CA, the sensor's LAN-zone certificate and the configuration",
		Description: "Creates DIR (mode 0700; an existing DIR is tightened to 0700) with the CA (ECDSA P-256), the sensor's server certificate\n" +
			"(SANs = the LAN-zone addresses), an empty trust store and DIR/tapbeat.toml. Keys are\n" +
			"written mode 0600. An existing sensor directory is refused.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", Required: true},
			&cli.StringFlag{Name: "org", Usage: "organisation `NAME` (certificate O); required unless --join"},
			&cli.StringFlag{Name: "lan", Usage: "LAN-zone `ADDR[,ADDR...]` the sensor listens on and agents connect to; required unless --join"},
			&cli.StringFlag{Name: "join", Usage: "join a fleet with the `FILE` `tapbeat fleet add` wrote on a fleet sensor"},
			&cli.StringFlag{Name: "fleet-addr", Usage: "make this the first sensor of a fleet, its routes on `HOST:PORT` (port 7422 by default)"},
			&cli.StringFlag{Name: "fleet-name", Usage: "this sensor's `NAME` in the fleet (default: the host name)"},
			&cli.IntFlag{Name: "port", Value: config.DefaultPort, Usage: "LAN-zone TCP port"},
			&cli.DurationFlag{Name: "heartbeat-interval", Value: config.DefaultInterval, Usage: "interval agents heartbeat at"},
		},
		Action: func(c *cli.Context) error {
			if c.IsSet("join") {
				if c.IsSet("lan") || c.IsSet("fleet-addr") {
					return errors.New("--join takes the LAN-zone and fleet addresses from the fleet file: drop --lan and --fleet-addr")
				}
				return joinAction(c)
			}
			if c.String("org") == "" || c.String("lan") == "" {
				return errors.New("init needs --org and --lan (or --join FILE for a sensor joining a fleet)")
			}
			addrs, err := config.ParseAddresses(c.String("lan"))
			if err != nil {
				return err
			}
			if d := c.Duration("heartbeat-interval"); d <= 0 {
				return fmt.Errorf("--heartbeat-interval %v: want a positive duration between 1s and 1h, such as 15s", d)
			}
			z := config.LANZone{Addresses: addrs, Port: c.Int("port"), HeartbeatInterval: c.Duration("heartbeat-interval")}
			if err := z.Validate(); err != nil {
				return err
			}
			ips := make([]netip.Addr, len(addrs))
			for i, a := range addrs {
				ips[i] = netip.MustParseAddr(a)
			}
			dir := c.String("dir")
			a, err := pki.Init(dir, c.String("org"), ips)
			if err != nil {
				return err
			}
			if err := config.Save(dir, z); err != nil {
				return err
			}
			pin, err := pki.ServerPin(dir)
			if err != nil {
				return err
			}
			if c.IsSet("fleet-addr") {
				if err := setFleetAddr(c, dir, c.String("fleet-addr")); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.App.Writer, "initialised %s for %s\n  LAN zone: %v\n  sensor pin: %s\nnext: tapbeat enroll --dir %s --name HOST\n",
				dir, a.Org(), z.AddrPorts(), pin, dir)
			return nil
		},
	}
}
