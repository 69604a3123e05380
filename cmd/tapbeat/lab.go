package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/urfave/cli/v2"
)

// labCommand is "tapbeat lab up|down|status": the network-namespace
// mirror-port lab for demos and end-to-end tests.
func labCommand() *cli.Command {
	nameFlag := &cli.StringFlag{Name: "name", Value: "tapbeat", Usage: "lab `NAME`, the prefix of its namespaces (a-z, 0-9, _)"}
	dirFlag := &cli.StringFlag{Name: "state-dir", Value: lab.DefaultStateDir, Usage: "`DIR` holding the labs' state files"}
	formatFlag := &cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json"}
	return &cli.Command{
		Name:  "lab",
		Usage: "network-namespace lab: a switch with a mirror port, the sensor and endpoints (root)",
		Description: "The lab builds, on this machine, a bridge (the switch) whose every host port is mirrored\n" +
			"to a SPAN port, the sensor's namespace with its LAN interface and its mirror capture interface,\n" +
			"and endpoint namespaces. Run commands in it with: tapbeat lab exec HOST COMMAND\n" +
			"(or ip netns exec NAME-HOST COMMAND; hosts: switch, sensor, ep1, ep2, ...).",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "create a lab and print what it is made of",
				Flags: []cli.Flag{
					nameFlag, dirFlag, formatFlag,
					&cli.IntFlag{Name: "endpoints", Value: 3, Usage: "number of endpoints"},
					&cli.IntSliceFlag{Name: "multi-homed", Usage: "endpoint `NUMBER`s (1 = ep1) that get a second interface"},
					&cli.IntSliceFlag{Name: "unmanaged", Usage: "endpoint `NUMBER`s that run no agent"},
					&cli.StringFlag{Name: "subnet", Value: lab.DefaultSubnet().String(), Usage: "private IPv4 `PREFIX` (/16 to /24) for the lab's addresses"},
					&cli.BoolFlag{Name: "verify", Usage: "after creating, check with AF_PACKET sockets that a ping's frames appear exactly once on the mirror"},
				},
				Action: labUp,
			},
			{
				Name:   "status",
				Usage:  "describe one lab (--name) or every lab with a state file",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "name", Usage: "lab `NAME` (all labs when empty)"}, dirFlag, formatFlag},
				Action: labStatus,
			},
			{
				Name:      "exec",
				Usage:     "run a command inside a lab host's namespace (hosts: switch, sensor, ep1, ...)",
				ArgsUsage: "HOST COMMAND [ARG...]",
				Flags:     []cli.Flag{nameFlag, dirFlag},
				Action:    labExec,
			},
			{
				Name:      "link",
				Usage:     "take the mirror port (mirror) or a host's switch port (HOST or HOST:INTERFACE, e.g. ep1:1) down or up",
				ArgsUsage: "mirror|HOST[:INTERFACE] up|down",
				Flags:     []cli.Flag{nameFlag, dirFlag},
				Action:    labLink,
			},
			{
				Name: "down",
				Usage: "remove a lab: its namespaces (and the processes in them) and its state file; " +
					"works from the name alone after a crash and does nothing when the lab is gone",
				Flags:  []cli.Flag{nameFlag, dirFlag},
				Action: labDown,
			},
		},
	}
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root for network namespaces: run it as root (sudo tapbeat lab ...)")
	}
	return nil
}

func checkFormat(c *cli.Context) (string, error) {
	f := c.String("format")
	if f != "table" && f != "json" {
		return "", fmt.Errorf("--format %q: want table or json", f)
	}
	return f, nil
}

func labUp(c *cli.Context) error {
	format, err := checkFormat(c)
	if err != nil {
		return err
	}
	subnet, err := netip.ParsePrefix(c.String("subnet"))
	if err != nil {
		return fmt.Errorf("--subnet %q: %w (want a prefix such as %s)", c.String("subnet"), err, lab.DefaultSubnet())
	}
	n := c.Int("endpoints")
	if n < 1 {
		return fmt.Errorf("--endpoints %d: a lab needs at least one endpoint", n)
	}
	specs := lab.Endpoints(n)
	for _, flag := range []string{"multi-homed", "unmanaged"} {
		for _, i := range c.IntSlice(flag) {
			if i < 1 || i > n {
				return fmt.Errorf("--%s %d: endpoints are numbered 1 to %d", flag, i, n)
			}
			if flag == "multi-homed" {
				specs[i-1].Interfaces = 2
			} else {
				specs[i-1].Unmanaged = true
			}
		}
	}
	cfg := lab.Config{Name: c.String("name"), Subnet: subnet, Endpoints: specs, StateDir: c.String("state-dir")}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	l, err := lab.Up(c.Context, cfg)
	if err != nil {
		return err
	}
	if err := writeStates(c.App.Writer, format, &l.State); err != nil {
		return err
	}
	if c.Bool("verify") {
		to := lab.HostSensor
		if len(l.Endpoints) > 1 {
			to = l.Endpoints[1].Name
		}
		rep, err := l.VerifyMirror(c.Context, l.Endpoints[0].Name, to, 3)
		if err != nil {
			return fmt.Errorf("%w (the lab is left up for inspection; remove it with tapbeat lab down --name %s)", err, l.Name)
		}
		fmt.Fprintf(c.App.ErrWriter, "mirror verified: %s <-> %s, %d frames sent, each seen once on %s\n", l.Endpoints[0].Name, to, rep.Mirrored, l.Sensor.Mirror)
	}
	return nil
}

func labStatus(c *cli.Context) error {
	format, err := checkFormat(c)
	if err != nil {
		return err
	}
	dir := c.String("state-dir")
	if name := c.String("name"); name != "" {
		st, err := lab.ReadState(dir, name)
		if err != nil {
			return err
		}
		return writeStates(c.App.Writer, format, st)
	}
	states, err := lab.ListStates(dir)
	if err != nil && len(states) == 0 {
		return err
	}
	if format == "json" {
		if states == nil {
			states = []*lab.State{}
		}
		if werr := writeJSON(c.App.Writer, states); werr != nil {
			return werr
		}
		return err
	}
	if len(states) == 0 {
		fmt.Fprintf(c.App.Writer, "no labs (no state files in %s)\n", dir)
	}
	for i, st := range states {
		if i > 0 {
			fmt.Fprintln(c.App.Writer)
		}
		if werr := st.WriteTable(c.App.Writer); werr != nil {
			return werr
		}
	}
	return err
}

func labDown(c *cli.Context) error {
	name := c.String("name")
	if err := lab.ValidateName(name); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	if err := lab.Teardown(c.Context, c.String("state-dir"), name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "lab %s is down\n", name)
	return nil
}

func labExec(c *cli.Context) error {
	if c.NArg() < 2 {
		return fmt.Errorf("usage: tapbeat lab exec [--name NAME] HOST COMMAND [ARG...]")
	}
	if err := requireRoot(); err != nil {
		return err
	}
	l, err := lab.LoadFrom(c.String("state-dir"), c.String("name"))
	if err != nil {
		return err
	}
	args := c.Args().Slice()
	cmd, err := l.Command(c.Context, args[0], args[1:]...)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.App.Writer, c.App.ErrWriter
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s on lab host %s: %w", args[1], args[0], err)
	}
	return nil
}

func labLink(c *cli.Context) error {
	if c.NArg() != 2 || (c.Args().Get(1) != "up" && c.Args().Get(1) != "down") {
		return fmt.Errorf("usage: tapbeat lab link [--name NAME] mirror|HOST[:INTERFACE] up|down")
	}
	if err := requireRoot(); err != nil {
		return err
	}
	l, err := lab.LoadFrom(c.String("state-dir"), c.String("name"))
	if err != nil {
		return err
	}
	target, up := c.Args().Get(0), c.Args().Get(1) == "up"
	if target == "mirror" {
		return l.SetMirrorLink(c.Context, up)
	}
	host, iface := target, 0
	if h, i, ok := strings.Cut(target, ":"); ok {
		n, err := strconv.Atoi(i)
		if err != nil {
			return fmt.Errorf("link target %q: the interface after ':' is a number counting from 0 (ep1:1 is ep1's eth1)", target)
		}
		host, iface = h, n
	}
	return l.SetPortLink(c.Context, host, iface, up)
}

func writeStates(w io.Writer, format string, st *lab.State) error {
	if format == "json" {
		return writeJSON(w, st)
	}
	return st.WriteTable(w)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
