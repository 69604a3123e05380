package daemon

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/history"
)

// serveFleetQueries answers the fleet's history, alerts, who, traffic and
// unmanaged queries (`tapbeat query ... --fleet`) from this sensor's own
// history.
func serveFleetQueries(f *fleet.Fleet, b api.Backend) error {
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
	for kind, h := range handlers {
		if err := f.Handle(kind, h); err != nil {
			return err
		}
	}
	return nil
}
