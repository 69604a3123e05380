package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// fleetWait is how long a fleet query waits for the sensors' answers.
const fleetWait = 5 * time.Second

// fleetBackend answers a query from every reachable sensor of the fleet:
// the first call asks them all (request/reply over the fleet), and each
// run of the query renders one sensor's rows.
type fleetBackend struct {
	nc      *nats.Conn
	sensors []string
	replies []fleet.Reply
	missing []string
	asked   bool
	cur     int
}

func (b *fleetBackend) rows(ctx context.Context, kind string, req any, out any) error {
	if !b.asked {
		raw, err := json.Marshal(req)
		if err != nil {
			return err
		}
		b.replies, b.missing, err = fleet.Ask(ctx, b.nc, kind, raw, b.sensors, fleetWait)
		if err != nil {
			return err
		}
		b.asked = true
		if len(b.replies) == 0 {
			return fmt.Errorf("no sensor of the fleet answered within %v (not answering: %s)", fleetWait, strings.Join(b.missing, ", "))
		}
	}
	r := b.replies[b.cur]
	if r.Error != "" {
		return fmt.Errorf("sensor %s: %s", r.Sensor, r.Error)
	}
	return json.Unmarshal(r.Rows, out)
}

func (b *fleetBackend) Endpoints(context.Context) (api.EndpointList, error) {
	return api.EndpointList{}, errors.New("query endpoints answers for the whole fleet already: drop --fleet")
}

func (b *fleetBackend) History(ctx context.Context, q history.HistoryQuery) (out []schema.Event, err error) {
	return out, b.rows(ctx, "history", q, &out)
}

func (b *fleetBackend) Alerts(ctx context.Context, q history.AlertQuery) (out []schema.Event, err error) {
	return out, b.rows(ctx, "alerts", q, &out)
}

func (b *fleetBackend) Who(ctx context.Context, ip netip.Addr, at time.Time) (out history.WhoAnswer, err error) {
	return out, b.rows(ctx, "who", fleet.WhoRequest{IP: ip, At: at}, &out)
}

func (b *fleetBackend) Traffic(ctx context.Context, q history.TrafficQuery) (out []history.TrafficMinute, err error) {
	return out, b.rows(ctx, "traffic", q, &out)
}

func (b *fleetBackend) Unmanaged(ctx context.Context, r history.Range) (out []history.Station, err error) {
	return out, b.rows(ctx, "unmanaged", r, &out)
}

func (b *fleetBackend) Backup(context.Context, io.Writer) error {
	return errors.New("backup takes one sensor's history: drop --fleet")
}

// runFleetQuery runs a query on every reachable sensor of the fleet,
// writing each sensor's rows under a "# sensor NAME" line, and names the
// sensors that did not answer.
func runFleetQuery(e *queryEnv, fn func(*queryEnv) error) error {
	dir := e.c.String("dir")
	cfg, err := fleet.Load(dir)
	if err != nil {
		return err
	}
	if !cfg.Enabled() {
		return fmt.Errorf("--fleet: %s is not a fleet sensor", dir)
	}
	nc, err := fleet.Dial(dir, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	b := &fleetBackend{nc: nc, sensors: fleet.KnownSensors(e.c.Context, nc)}
	e.b, e.via = b, "fleet via "+cfg.Name
	out := e.w
	for {
		if b.asked {
			fmt.Fprintf(out, "# sensor %s\n", b.replies[b.cur].Sensor)
		}
		var buf strings.Builder
		e.w = &buf
		if err := fn(e); err != nil {
			return err
		}
		if b.cur == 0 {
			fmt.Fprintf(out, "# sensor %s\n", b.replies[0].Sensor)
		}
		io.WriteString(out, buf.String())
		b.cur++
		if b.cur >= len(b.replies) {
			break
		}
	}
	if len(b.missing) > 0 {
		e.footer("did not answer: %s\n", strings.Join(b.missing, ", "))
	}
	return nil
}
