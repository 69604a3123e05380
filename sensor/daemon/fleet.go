package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/history"
)

// applyFleet applies a changed [fleet] table: a fleet sensor leaves the
// fleet and joins again with the new table (the first peer that `tapbeat
// fleet add` gives a sensor that ran alone, a new address), keeping its
// engine and its agents. A sensor that started without a fleet joins one,
// or a fleet sensor leaves it, at its next start.
func (s *Sensor) applyFleet(old, cur fleet.Config) {
	if reflect.DeepEqual(old, cur) {
		return
	}
	bridge := s.bridge.Load()
	if bridge == nil || !cur.Enabled() {
		s.log.Warn("configuration: a changed setting takes effect at the next start", "setting", "fleet",
			"fix", "restart the sensor (systemctl restart tapbeat)")
		return
	}
	// A clustered node learns new peers from the routes they open (NATS
	// gossips the cluster's members): more peers need no new membership.
	if old.Name == cur.Name && old.Addr == cur.Addr && old.NATSURL == cur.NATSURL && old.Credentials == cur.Credentials &&
		old.ClientPort == cur.ClientPort && old.Replicas == cur.Replicas && len(old.Peers) > 0 && len(cur.Peers) > 0 {
		s.log.Info("fleet: peers changed; the cluster learns them from their routes", "peers", cur.Peers)
		return
	}
	s.log.Info("fleet: the [fleet] table changed: joining again", "peers", cur.Peers, "addr", cur.Addr)
	if err := bridge.Restart(s.fleetCtx, cur); err != nil {
		s.log.Error("fleet: could not join again with the changed [fleet] table; the sensor judges alone until it is fixed",
			"err", err, "fix", "correct the [fleet] table, or restart the sensor")
	}
}

// fleetQueries answers the fleet's history, alerts, who, traffic and
// unmanaged queries (`tapbeat query ... --fleet`) from this sensor's own
// history.
func fleetQueries(b api.Backend) map[string]fleet.Handler {
	decode := func(req []byte, v any) error {
		if err := json.Unmarshal(req, v); err != nil {
			return fmt.Errorf("fleet query: %w", err)
		}
		return nil
	}
	handlers := map[string]fleet.Handler{
		"history": func(ctx context.Context, req []byte) (any, error) {
			var q history.HistoryQuery
			if err := decode(req, &q); err != nil {
				return nil, err
			}
			return b.History(ctx, q)
		},
		"alerts": func(ctx context.Context, req []byte) (any, error) {
			var q history.AlertQuery
			if err := decode(req, &q); err != nil {
				return nil, err
			}
			return b.Alerts(ctx, q)
		},
		"who": func(ctx context.Context, req []byte) (any, error) {
			var q fleet.WhoRequest
			if err := decode(req, &q); err != nil {
				return nil, err
			}
			return b.Who(ctx, q.IP, q.At)
		},
		"traffic": func(ctx context.Context, req []byte) (any, error) {
			var q history.TrafficQuery
			if err := decode(req, &q); err != nil {
				return nil, err
			}
			return b.Traffic(ctx, q)
		},
		"unmanaged": func(ctx context.Context, req []byte) (any, error) {
			var q history.Range
			if err := decode(req, &q); err != nil {
				return nil, err
			}
			return b.Unmanaged(ctx, q)
		},
	}
	return handlers
}
