package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "change the sensor's configuration",
		Subcommands: []*cli.Command{
			configCheckCommand(),
			configExampleCommand(),
			{
				Name:      "set",
				Usage:     "set a LAN-zone setting: lan ADDR[,ADDR...] | lan-port PORT | heartbeat-interval DURATION",
				ArgsUsage: "KEY VALUE",
				Description: "lan: the LAN-zone addresses. The sensor certificate is re-issued for them with the same\n" +
					"key, so bundles stay valid; a running sensor sends the new list to connected agents\n" +
					"within a second (it listens on new addresses after a restart).\n" +
					"lan-port: the LAN-zone port (takes effect at the next start).\n" +
					"heartbeat-interval: a running sensor applies it within a second, to every part together:\n" +
					"agents are told at once and the correlator judges each endpoint by the longer interval\n" +
					"until it heartbeats at the new one. A --heartbeat-interval flag or TAPBEAT_HEARTBEAT_INTERVAL\n" +
					"given to tapbeat run still takes precedence over the file.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", Required: true},
					&cli.StringFlag{Name: "config", Usage: "configuration `FILE` the sensor runs with (default DIR/tapbeat.toml)", EnvVars: []string{"TAPBEAT_CONFIG"}},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return errors.New("usage: tapbeat config set --dir DIR KEY VALUE (keys: lan, lan-port, heartbeat-interval)")
					}
					dir, key, val := c.String("dir"), c.Args().Get(0), c.Args().Get(1)
					path := c.String("config")
					if path == "" {
						path = config.Path(dir)
					}
					z, err := config.LoadFile(path, dir)
					if err != nil {
						return err
					}
					switch key {
					case "lan":
						addrs, err := config.ParseAddresses(val)
						if err != nil {
							return err
						}
						a, err := pki.Open(dir)
						if err != nil {
							return err
						}
						ips := make([]netip.Addr, len(addrs))
						for i, s := range addrs {
							ips[i] = netip.MustParseAddr(s)
						}
						if err := a.ReissueServer(ips); err != nil {
							return err
						}
						z.Addresses = addrs
					case "lan-port":
						p, err := strconv.Atoi(val)
						if err != nil || p < 1 || p > 65535 {
							return fmt.Errorf("lan-port %q: want 1-65535", val)
						}
						z.Port = p
					case "heartbeat-interval":
						d, err := time.ParseDuration(val)
						if err != nil {
							return fmt.Errorf("heartbeat-interval %q: want a duration such as 15s", val)
						}
						z.HeartbeatInterval = d
					default:
						return fmt.Errorf("unknown key %q: want lan, lan-port or heartbeat-interval", key)
					}
					if err := config.SaveFile(path, z); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "LAN zone: %v, heartbeat every %v\n", z.AddrPorts(), z.HeartbeatInterval)
					return nil
				},
			},
		},
	}
}
