package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Endpoint state sources.
const (
	SourceLive    = "live"    // the running daemon's correlator
	SourceHistory = "history" // the latest state persisted in history
)

// EndpointList is the answer to an endpoints query.
type EndpointList struct {
	// Source says where the states come from: SourceLive or SourceHistory.
	Source    string                 `json:"source"`
	Endpoints []schema.EndpointState `json:"endpoints"`
}

// Backend answers the forensic queries. *Client asks a daemon; Local asks a
// store opened in-process.
type Backend interface {
	Endpoints(ctx context.Context) (EndpointList, error)
	History(ctx context.Context, q history.HistoryQuery) ([]schema.Event, error)
	Alerts(ctx context.Context, q history.AlertQuery) ([]schema.Event, error)
	Who(ctx context.Context, ip netip.Addr, at time.Time) (history.WhoAnswer, error)
	Traffic(ctx context.Context, q history.TrafficQuery) ([]history.TrafficMinute, error)
	Unmanaged(ctx context.Context, r history.Range) ([]history.Station, error)
	// Backup writes a gzip-compressed Badger backup of the whole history.
	Backup(ctx context.Context, w io.Writer) error
}

// Local is a Backend over a store opened in-process, with live state when
// Live is set.
type Local struct {
	Store *history.Store
	Live  Live // may be nil
}

var _ Backend = Local{}

// Endpoints returns the live states if a Live is set, else the persisted ones.
func (l Local) Endpoints(context.Context) (EndpointList, error) {
	if l.Live != nil {
		eps := l.Live.Endpoints()
		if eps == nil {
			eps = []schema.EndpointState{}
		}
		return EndpointList{Source: SourceLive, Endpoints: eps}, nil
	}
	eps, err := l.Store.Endpoints()
	return EndpointList{Source: SourceHistory, Endpoints: eps}, err
}

// History implements Backend.
func (l Local) History(_ context.Context, q history.HistoryQuery) ([]schema.Event, error) {
	return l.Store.History(q)
}

// Alerts implements Backend.
func (l Local) Alerts(_ context.Context, q history.AlertQuery) ([]schema.Event, error) {
	return l.Store.Alerts(q)
}

// Who implements Backend.
func (l Local) Who(_ context.Context, ip netip.Addr, at time.Time) (history.WhoAnswer, error) {
	return l.Store.Who(ip, at)
}

// Traffic implements Backend.
func (l Local) Traffic(_ context.Context, q history.TrafficQuery) ([]history.TrafficMinute, error) {
	return l.Store.Traffic(q)
}

// Unmanaged implements Backend.
func (l Local) Unmanaged(_ context.Context, r history.Range) ([]history.Station, error) {
	return l.Store.Unmanaged(r)
}

// Backup implements Backend.
func (l Local) Backup(ctx context.Context, w io.Writer) error {
	return l.Store.Backup(ctx, w)
}

// endpointJSON is an EndpointState whose health may be unknown (an endpoint
// that said hello and has not reported yet): schema.Health refuses to encode
// its zero value, so it is written as an omitted field.
type endpointJSON struct {
	schema.EndpointState
	Health string `json:"health,omitempty"`
}

type endpointListJSON struct {
	Source    string         `json:"source"`
	Endpoints []endpointJSON `json:"endpoints"`
}

// MarshalJSON implements json.Marshaler.
func (l EndpointList) MarshalJSON() ([]byte, error) {
	out := endpointListJSON{Source: l.Source, Endpoints: make([]endpointJSON, len(l.Endpoints))}
	for i, e := range l.Endpoints {
		out.Endpoints[i].EndpointState = e
		if e.Health.Valid() {
			out.Endpoints[i].Health = e.Health.String()
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *EndpointList) UnmarshalJSON(b []byte) error {
	var in endpointListJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	l.Source = in.Source
	l.Endpoints = make([]schema.EndpointState, len(in.Endpoints))
	for i, e := range in.Endpoints {
		l.Endpoints[i] = e.EndpointState
		l.Endpoints[i].Health = 0
		if e.Health != "" {
			h, err := schema.ParseHealth(e.Health)
			if err != nil {
				return fmt.Errorf("endpoint %s: %w", e.ID, err)
			}
			l.Endpoints[i].Health = h
		}
	}
	return nil
}
