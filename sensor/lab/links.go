package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// linkSettle bounds how long the lab waits for the kernel to bring its
// links up. Carrier changes reach the bridge through the kernel's link
// watcher, which may defer them by up to a second; on a loaded machine it
// can take longer.
const linkSettle = 10 * time.Second

// linkState is the part of `ip -j link show` and `bridge -j link show`
// output the lab reads.
type linkState struct {
	Name      string `json:"ifname"`
	OperState string `json:"operstate"`
	PortState string `json:"state"`
}

// waitSwitching returns once every bridge port forwards and every host
// interface and the mirror interface have their carrier, so a frame sent
// right after Up crosses the switch and the mirror. Until then the kernel
// silently drops frames at a port that is not yet forwarding.
func (l *Lab) waitSwitching(ctx context.Context) error {
	ports := []string{l.Sensor.LAN.Port}
	hosts := map[string][]string{l.Sensor.Namespace: {l.Sensor.Mirror, l.Sensor.LAN.Name}}
	for _, e := range l.Endpoints {
		for _, ifc := range e.Interfaces {
			ports = append(ports, ifc.Port)
			hosts[e.Namespace] = append(hosts[e.Namespace], ifc.Name)
		}
	}
	return waitPorts(ctx, l.Name, l.Switch.Namespace, ports, hosts)
}

// waitPorts returns once every bridge port in ports of the switch in
// namespace sw forwards and every interface in hosts (by namespace) has
// its carrier.
func waitPorts(ctx context.Context, lab, sw string, ports []string, hosts map[string][]string) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, linkSettle)
	defer cancel()
	var waiting []string
	var lastErr error
	for {
		w, err := linksNotUp(ctx, sw, ports, hosts)
		switch {
		case err == nil && len(w) == 0:
			return nil
		case err == nil:
			waiting, lastErr = w, nil
		case ctx.Err() == nil:
			lastErr = err
		}
		select {
		case <-ctx.Done():
			why := lastErr
			if why == nil && waiting != nil {
				why = fmt.Errorf("%s not up", strings.Join(waiting, ", "))
			}
			if why == nil {
				why = ctx.Err()
			}
			return fmt.Errorf("lab %s: wait for the switch %s to forward: %w after %s; check `dmesg` for veth or bridge errors", lab, sw, why, time.Since(start).Round(time.Millisecond))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// linksNotUp names the bridge ports in ports of the switch in namespace sw
// that do not forward and the interfaces in hosts (by namespace) that have
// no carrier.
func linksNotUp(ctx context.Context, sw string, ports []string, hosts map[string][]string) ([]string, error) {
	var waiting []string
	bridge, err := readLinks(ctx, "bridge", "-n", sw, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if i := slices.IndexFunc(bridge, func(s linkState) bool { return s.Name == p }); i < 0 || bridge[i].PortState != "forwarding" {
			waiting = append(waiting, "switch port "+p)
		}
	}
	for ns, names := range hosts {
		links, err := readLinks(ctx, "ip", "-n", ns, "-j", "link", "show")
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if i := slices.IndexFunc(links, func(s linkState) bool { return s.Name == n }); i < 0 || links[i].OperState != "UP" {
				waiting = append(waiting, ns+"/"+n)
			}
		}
	}
	slices.Sort(waiting)
	return waiting, nil
}

func readLinks(ctx context.Context, name string, args ...string) ([]linkState, error) {
	out, err := run(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	var links []linkState
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("%s %s: read its JSON output: %w", name, strings.Join(args, " "), err)
	}
	return links, nil
}
