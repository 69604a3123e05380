package labdeploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Fleet is tapbeat running as a fleet: one sensor per lab (a site with its
// own switch and mirror port), the labs joined into one network
// (lab.Join). Sites[i] is sensor "s<i+1>" with the endpoints of labs[i];
// each site's endpoints are named "s<i+1>-<host>" in the fleet.
type Fleet struct {
	Sites []*Deployment
}

// SiteName is the fleet name of site i's sensor.
func SiteName(i int) string { return "s" + strconv.Itoa(i+1) }

// FleetOptions describe a fleet deployment.
type FleetOptions struct {
	// Options apply to every site; Dir is ignored: site i keeps its sensor
	// directory in Base/s<i+1>.
	Options
	Base string
	// IssuedBy returns the site whose sensor enrolls site's endpoint host:
	// its bundle names that sensor first, so the agent connects there
	// (nil: every endpoint is enrolled at its own site).
	IssuedBy func(site int, host string) int
	// StartAgents starts every managed endpoint's agent as soon as the
	// sensors run, before the fleet has formed, as on a network whose
	// endpoints already run agents.
	StartAgents bool
}

// DeployFleet makes the first lab's sensor the first sensor of a fleet
// (`tapbeat init --fleet-addr`), adds one sensor per further lab (`tapbeat
// fleet add`, then `tapbeat init --join` in its own directory), enrolls
// every managed endpoint, starts every sensor and waits until the fleet is
// healthy with all of them registered.
func DeployFleet(ctx context.Context, labs []*lab.Lab, fo FleetOptions) (*Fleet, error) {
	if len(labs) < 2 {
		return nil, errors.New("a fleet needs two labs or more")
	}
	opts, base := fo.Options, fo.Base
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 2 * time.Second
	}
	if opts.Org == "" {
		opts.Org = "Lab"
	}
	fl := &Fleet{}
	for i, l := range labs {
		o := opts
		o.Dir = filepath.Join(base, SiteName(i))
		o.EndpointPrefix = SiteName(i) + "-"
		fl.Sites = append(fl.Sites, &Deployment{Lab: l, Opts: o, agents: map[string]*lab.Process{}})
	}
	first := fl.Sites[0]
	lan0, err := labs[0].Addr(lab.HostSensor)
	if err != nil {
		return nil, err
	}
	if _, err := first.tapbeat(ctx, "init", "--dir", first.Opts.Dir, "--org", opts.Org, "--lan", lan0.String(),
		"--heartbeat-interval", opts.HeartbeatInterval.String(),
		"--fleet-addr", fleetAddr(lan0.String()), "--fleet-name", SiteName(0)); err != nil {
		return nil, err
	}
	for i, d := range fl.Sites[1:] {
		lanI, err := d.Lab.Addr(lab.HostSensor)
		if err != nil {
			return nil, err
		}
		join := filepath.Join(base, SiteName(i+1)+".fleet.json")
		if _, err := first.tapbeat(ctx, "fleet", "add", "--dir", first.Opts.Dir, "--name", SiteName(i+1),
			"--lan", lanI.String(), "--fleet-addr", fleetAddr(lanI.String()), "--out", join); err != nil {
			return nil, err
		}
		if _, err := d.tapbeat(ctx, "init", "--dir", d.Opts.Dir, "--join", join); err != nil {
			return nil, err
		}
	}
	for i, d := range fl.Sites {
		if err := d.extendConfig(); err != nil {
			return nil, err
		}
		for _, ep := range d.Lab.Endpoints {
			if !ep.Managed {
				continue
			}
			issuer := d
			if fo.IssuedBy != nil {
				issuer = fl.Sites[fo.IssuedBy(i, ep.Name)]
			}
			if err := d.EnrollWith(ctx, issuer, ep.Name); err != nil {
				return nil, err
			}
		}
	}
	errs := make(chan error, len(fl.Sites))
	for _, d := range fl.Sites {
		go func() { errs <- d.StartSensor(ctx) }()
	}
	for range fl.Sites {
		if err := <-errs; err != nil {
			fl.Stop()
			return nil, err
		}
	}
	if fo.StartAgents {
		for _, d := range fl.Sites {
			for _, ep := range d.Lab.Endpoints {
				if !ep.Managed {
					continue
				}
				if err := d.StartAgent(ctx, ep.Name); err != nil {
					fl.Stop()
					return nil, err
				}
			}
		}
	}
	if _, err := fl.WaitHealthy(ctx, 90*time.Second); err != nil {
		fl.Stop()
		return nil, err
	}
	return fl, nil
}

func fleetAddr(host string) string { return host + ":" + strconv.Itoa(fleet.DefaultPort) }

// Status reads `tapbeat fleet status` from site i's sensor.
func (fl *Fleet) Status(ctx context.Context, i int) (*fleet.Status, error) {
	// The node's client port is on the sensor namespace's loopback.
	d := fl.Sites[i]
	out, err := d.Lab.Run(ctx, lab.HostSensor, filepath.Join(d.Opts.Bin, "tapbeat"), "fleet", "status", "--dir", d.Opts.Dir, "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("fleet status of %s: %w\n%s", SiteName(i), err, out)
	}
	var st fleet.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("fleet status of %s: %w\n%s", SiteName(i), err, out)
	}
	return &st, nil
}

// WaitHealthy waits until the given sites' sensors (every site's when none
// is given) report a healthy fleet with every sensor registered and every
// stream replicated with a leader, and returns how long that took.
func (fl *Fleet) WaitHealthy(ctx context.Context, limit time.Duration, sites ...int) (time.Duration, error) {
	return fl.waitStatus(ctx, limit, sites, func(st *fleet.Status) error { return healthy(st, len(fl.Sites)) })
}

// WaitReachable waits until the given sites' sensors (every site's when
// none is given) see every sensor of the fleet registered and current.
func (fl *Fleet) WaitReachable(ctx context.Context, limit time.Duration, sites ...int) (time.Duration, error) {
	return fl.waitStatus(ctx, limit, sites, func(st *fleet.Status) error {
		if len(st.Sensors) != len(fl.Sites) {
			return fmt.Errorf("%d sensors registered, want %d", len(st.Sensors), len(fl.Sites))
		}
		for _, ss := range st.Sensors {
			if !ss.Reachable {
				return fmt.Errorf("sensor %s not current (last seen %s)", ss.Name, ss.LastSeen.Format(time.RFC3339))
			}
		}
		return nil
	})
}

func (fl *Fleet) waitStatus(ctx context.Context, limit time.Duration, sites []int, check func(*fleet.Status) error) (time.Duration, error) {
	if len(sites) == 0 {
		for i := range fl.Sites {
			sites = append(sites, i)
		}
	}
	start := time.Now()
	var last error
	for time.Since(start) < limit {
		ok := true
		for _, i := range sites {
			st, err := fl.Status(ctx, i)
			if err == nil {
				err = check(st)
			}
			if err != nil {
				last, ok = fmt.Errorf("%s: %w", SiteName(i), err), false
				break
			}
		}
		if ok {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return time.Since(start), fmt.Errorf("the fleet was not as wanted within %s: %v", limit, last)
}

func healthy(st *fleet.Status, sensors int) error {
	if !st.Healthy {
		return fmt.Errorf("fleet not healthy: %s", strings.Join(st.Problems, "; "))
	}
	if len(st.Sensors) != sensors {
		return fmt.Errorf("%d sensors registered, want %d", len(st.Sensors), sensors)
	}
	for _, a := range st.Assets {
		if a.Leader == "" || a.Replicas != min(sensors, 3) {
			return fmt.Errorf("%s: %d replicas, leader %q", a.Name, a.Replicas, a.Leader)
		}
	}
	return nil
}

// Stop stops every site's agents and sensor.
func (fl *Fleet) Stop() {
	for _, d := range fl.Sites {
		d.Stop()
	}
}

// Alerts returns every site's alerts so far, by sensor name.
func (fl *Fleet) Alerts() (map[string][]schema.Event, error) {
	out := map[string][]schema.Event{}
	for i, d := range fl.Sites {
		evs, err := d.Alerts()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", SiteName(i), err)
		}
		out[SiteName(i)] = evs
	}
	return out, nil
}

// extendConfig appends Options.ExtraConfig to the sensor's configuration.
func (d *Deployment) extendConfig() error {
	if d.Opts.ExtraConfig == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(d.Opts.Dir, "tapbeat.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("extend the sensor configuration: %w", err)
	}
	_, err = f.WriteString("\n" + d.Opts.ExtraConfig + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("extend the sensor configuration: %w", err)
	}
	return nil
}
