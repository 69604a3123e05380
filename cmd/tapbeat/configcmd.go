package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/api"
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
				Usage:     "set a setting: lan ADDR[,ADDR...] | lan-port PORT | heartbeat-interval DURATION | fleet-addr HOST:PORT",
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
					&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR` (on the sensor itself)", EnvVars: []string{"TAPBEAT_DIR"}},
					&cli.StringFlag{Name: "server", Usage: "a running sensor's admin API `URL` (https://HOST:PORT), with --bundle: the sensor changes its file and applies it"},
					&cli.StringFlag{Name: "bundle", Usage: "administrator bundle `FILE` from `tapbeat enroll --admin`, for --server"},
					&cli.StringFlag{Name: "config", Usage: "configuration `FILE` the sensor runs with (default DIR/tapbeat.toml)", EnvVars: []string{"TAPBEAT_CONFIG"}},
					&cli.StringFlag{Name: "fleet-name", Usage: "with fleet-addr: this sensor's `NAME` in the fleet (default: the host name)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() == 2 && c.Args().Get(0) == "fleet-addr" {
						return setFleetAddr(c, c.String("dir"), c.Args().Get(1))
					}
					if c.NArg() != 2 {
						return errors.New("usage: tapbeat config set --dir DIR KEY VALUE (keys: lan, lan-port, heartbeat-interval)")
					}
					key, val := c.Args().Get(0), c.Args().Get(1)
					if url := c.String("server"); url != "" {
						return configSetRemote(c, url, key, val)
					}
					dir := c.String("dir")
					if dir == "" {
						return errors.New("give --dir DIR on the sensor, or --server URL --bundle ADMIN.json from elsewhere")
					}
					path := c.String("config")
					if path == "" {
						path = config.Path(dir)
					}
					z, err := config.LoadFile(path, dir)
					if err != nil {
						return err
					}
					if err := z.Set(key, val); err != nil {
						return err
					}
					if key == "lan" {
						if err := reissueServer(dir, z.Addresses); err != nil {
							return err
						}
					}
					if err := config.SaveFile(path, z); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "LAN zone: %v, heartbeat every %v\n", z.AddrPorts(), z.WithDefaults().HeartbeatInterval)
					return nil
				},
			},
		},
	}
}

// reissueServer re-issues the sensor certificate for the LAN-zone
// addresses, with the same key, so bundles stay valid.
func reissueServer(dir string, addrs []string) error {
	a, err := pki.Open(dir)
	if err != nil {
		return err
	}
	ips := make([]netip.Addr, len(addrs))
	for i, s := range addrs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("LAN-zone address %q: %w", s, err)
		}
		ips[i] = ip
	}
	return a.ReissueServer(ips)
}

// configSetRemote asks a running sensor, through its admin API, to change
// a setting: it writes its own configuration file and applies the result
// as for any other change.
func configSetRemote(c *cli.Context, url, key, val string) error {
	if c.String("bundle") == "" {
		return errors.New("--server needs --bundle ADMIN.json (from `tapbeat enroll --admin`)")
	}
	b, err := pki.ReadBundle(c.String("bundle"))
	if err != nil {
		return err
	}
	cfg, err := pki.AdminClientConfig(b)
	if err != nil {
		return err
	}
	cl, err := api.NewTLSClient(url, cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	ans, err := cl.SetConfig(c.Context, key, val)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "LAN zone: %v, heartbeat every %s (applied by the sensor)\n", ans.Addresses, ans.HeartbeatInterval)
	return nil
}
