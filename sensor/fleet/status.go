package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Status is the fleet as one sensor's node sees it.
type Status struct {
	Sensor  string         `json:"sensor"`
	Sensors []SensorStatus `json:"sensors"`
	Assets  []AssetStatus  `json:"streams"`
	// Endpoints counts connected endpoints per holding sensor.
	Endpoints map[string]int `json:"endpoints_connected"`
	Healthy   bool           `json:"healthy"`
	Problems  []string       `json:"problems,omitempty"`
}

// SensorStatus is one sensor of the registry.
type SensorStatus struct {
	Name      string        `json:"name"`
	FleetAddr string        `json:"fleet_addr,omitempty"`
	LAN       []string      `json:"lan"`
	Reachable bool          `json:"reachable"`
	LastSeen  time.Time     `json:"last_seen"`
	ClockSkew time.Duration `json:"clock_skew_ns"`
}

// AssetStatus is one stream or bucket.
type AssetStatus struct {
	Name     string   `json:"name"`
	Replicas int      `json:"replicas"`
	Leader   string   `json:"leader,omitempty"`
	Current  []string `json:"current,omitempty"`
	Lagging  []string `json:"lagging,omitempty"`
	Messages uint64   `json:"messages"`
	MaxLag   uint64   `json:"max_lag"`
}

// Dial connects to the embedded node of the running sensor in dir over
// loopback, with the token it wrote, or to the configured external cluster.
func Dial(dir string, cfg Config) (*nats.Conn, error) {
	cfg = cfg.WithDefaults()
	if cfg.External() {
		var o []nats.Option
		if cfg.Credentials != "" {
			o = append(o, nats.UserCredentials(cfg.Credentials))
		}
		nc, err := nats.Connect(cfg.NATSURL, o...)
		if err != nil {
			return nil, fmt.Errorf("fleet: connect to %s: %w", cfg.NATSURL, err)
		}
		return nc, nil
	}
	tok, err := Token(dir)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", cfg.ClientPort)
	nc, err := nats.Connect(url, nats.Token(tok), nats.Timeout(3*time.Second))
	if err != nil {
		return nil, fmt.Errorf("fleet: connect to the sensor's node at %s: %w (is `tapbeat run --dir %s` running?)", url, err, dir)
	}
	return nc, nil
}

// ReadStatus gathers the fleet's status through nc.
func ReadStatus(ctx context.Context, nc *nats.Conn, self string) (*Status, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st := &Status{Sensor: self, Endpoints: map[string]int{}, Healthy: true}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	problem := func(s string) { st.Problems = append(st.Problems, s); st.Healthy = false }
	if kv, err := js.KeyValue(ctx, BucketSensors); err != nil {
		problem("sensor registry unavailable: " + err.Error())
	} else if entries, err := latest(ctx, kv); err != nil {
		problem("sensor registry unavailable: " + err.Error())
	} else {
		if len(entries) == 0 {
			problem("the sensor registry read back empty: its stream has no leader, or this node is still catching up")
		}
		for _, e := range entries {
			var r SensorRecord
			if json.Unmarshal(e.Value(), &r) != nil {
				continue
			}
			ss := SensorStatus{Name: r.Name, FleetAddr: r.FleetAddr, LAN: r.LAN, LastSeen: e.Created(),
				ClockSkew: r.Written.Sub(e.Created())}
			ss.Reachable = time.Since(e.Created()) < 4*registryEvery
			if !ss.Reachable {
				problem(fmt.Sprintf("sensor %s not heard from since %s", r.Name, e.Created().Format(time.RFC3339)))
			}
			if ss.ClockSkew > MaxClockSkew || ss.ClockSkew < -MaxClockSkew {
				problem(fmt.Sprintf("sensor %s clock is off by %v: synchronise it with NTP", r.Name, ss.ClockSkew.Round(time.Second)))
			}
			st.Sensors = append(st.Sensors, ss)
		}
	}
	if kv, err := js.KeyValue(ctx, BucketEndpoints); err == nil {
		if entries, err := latest(ctx, kv); err == nil {
			for _, e := range entries {
				var r EndpointRecord
				if json.Unmarshal(e.Value(), &r) == nil && r.Connected {
					st.Endpoints[r.Sensor]++
				}
			}
		}
	}
	for _, name := range []string{"KV_" + BucketEndpoints, "KV_" + BucketSensors, "KV_" + BucketClaims, StreamTrust, StreamEvents} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			problem(fmt.Sprintf("stream %s unavailable: %v", name, err))
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			problem(fmt.Sprintf("stream %s: %v", name, err))
			continue
		}
		a := AssetStatus{Name: name, Replicas: info.Config.Replicas, Messages: info.State.Msgs}
		if info.Cluster != nil {
			a.Leader = info.Cluster.Leader
			if a.Leader == "" {
				problem(fmt.Sprintf("stream %s has no leader: no quorum, or an election under way (after a sensor is lost, it takes up to about 10 s)", name))
			}
			for _, p := range info.Cluster.Replicas {
				a.MaxLag = max(a.MaxLag, p.Lag)
				if p.Current && !p.Offline {
					a.Current = append(a.Current, p.Name)
				} else {
					a.Lagging = append(a.Lagging, p.Name)
				}
			}
		}
		st.Assets = append(st.Assets, a)
	}
	slices.SortFunc(st.Sensors, func(a, b SensorStatus) int { return cmpString(a.Name, b.Name) })
	return st, nil
}

// latest returns a bucket's current entries, read through an ordered
// consumer from the stream's leader (a direct get may be answered by a
// replica still catching up), in one pass rather than a get per key.
func latest(ctx context.Context, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return out, errors.New("the watch ended early")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// Handler answers a fleet query with this sensor's rows (JSON).
type Handler func(ctx context.Context, req []byte) (any, error)

// Reply is one sensor's answer to a fleet query.
type Reply struct {
	Sensor string          `json:"sensor"`
	Rows   json.RawMessage `json:"rows,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Handle answers queries of kind (history, who, traffic, unmanaged, ...)
// from every sensor of the fleet.
func (f *Fleet) Handle(kind string, h Handler) error {
	_, err := f.nc.Subscribe(subjQuery+kind, func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep := Reply{Sensor: f.Name()}
		rows, err := h(ctx, m.Data)
		if err != nil {
			rep.Error = err.Error()
		} else if rep.Rows, err = json.Marshal(rows); err != nil {
			rep.Error = err.Error()
		}
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("fleet: serve %s queries: %w", kind, err)
	}
	return nil
}

// Ask sends a query to every sensor and collects answers until each
// sensor of the registry answered or wait passed. missing lists the
// registered sensors that did not answer.
func Ask(ctx context.Context, nc *nats.Conn, kind string, req []byte, sensors []string, wait time.Duration) (replies []Reply, missing []string, err error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet query: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjQuery+kind, inbox, req); err != nil {
		return nil, nil, fmt.Errorf("fleet query: %w", err)
	}
	deadline := time.Now().Add(wait)
	got := map[string]bool{}
	for time.Now().Before(deadline) && (len(sensors) == 0 || len(got) < len(sensors)) {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return replies, nil, fmt.Errorf("fleet query: %w", err)
		}
		var r Reply
		if json.Unmarshal(m.Data, &r) != nil || got[r.Sensor] {
			continue
		}
		got[r.Sensor] = true
		replies = append(replies, r)
	}
	for _, s := range sensors {
		if !got[s] {
			missing = append(missing, s)
		}
	}
	return replies, missing, nil
}

// WhoRequest is the fleet form of a `who` query.
type WhoRequest struct {
	IP netip.Addr `json:"ip"`
	At time.Time  `json:"at"`
}

const kindRegistry = "registry"

// KnownSensors returns the names of the sensors any reachable sensor knows
// from the registry (its in-memory copy, available without quorum).
func KnownSensors(ctx context.Context, nc *nats.Conn) []string {
	replies, _, err := Ask(ctx, nc, kindRegistry, nil, nil, time.Second)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range replies {
		var names []string
		if json.Unmarshal(r.Rows, &names) != nil {
			continue
		}
		for _, n := range append(names, r.Sensor) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// NodeTraffic is what this sensor's embedded NATS node has carried since it
// started, counted at the NATS protocol level (payloads and protocol lines,
// without TLS record overhead).
type NodeTraffic struct {
	// Routes are the open cluster routes to other sensors: the fleet's
	// traffic on the network. A closed route's counts leave the totals.
	Routes                      int
	RouteInBytes, RouteOutBytes uint64
	RouteInMsgs, RouteOutMsgs   uint64
	// InBytes and OutBytes count every connection of the node: routes and
	// this sensor's own in-process client.
	InBytes, OutBytes uint64
}

// Traffic returns the embedded node's counters; false when the fleet is an
// external NATS cluster (its own monitoring reports them).
func (f *Fleet) Traffic() (NodeTraffic, bool) {
	if f.node == nil {
		return NodeTraffic{}, false
	}
	var t NodeTraffic
	if rz, err := f.node.srv.Routez(&server.RoutezOptions{}); err == nil {
		t.Routes = len(rz.Routes)
		for _, r := range rz.Routes {
			t.RouteInBytes += uint64(r.InBytes)
			t.RouteOutBytes += uint64(r.OutBytes)
			t.RouteInMsgs += uint64(r.InMsgs)
			t.RouteOutMsgs += uint64(r.OutMsgs)
		}
	}
	if vz, err := f.node.srv.Varz(&server.VarzOptions{}); err == nil {
		t.InBytes, t.OutBytes = uint64(vz.InBytes), uint64(vz.OutBytes)
	}
	return t, true
}
