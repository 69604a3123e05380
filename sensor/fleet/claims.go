package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// BucketClaims holds one key per fact an observer-owned event reports
// (schema.OwnedByObserver): the first sensor to create the key raises the
// event, every other sensor that saw the same traffic drops its copy. Keys
// expire after the fact's window (claimWindow).
const BucketClaims = "tapbeat_claims"

// claimTimeout bounds the wait for a claim. A claim that cannot be made in
// time is raised anyway: a duplicate alert is better than a lost one.
const claimTimeout = 2 * time.Second

// claim is the fleet-wide identity of the fact an event reports, and how
// long two sensors' reports of it count as one.
type claim struct {
	key    string
	window time.Duration
}

// claimOf returns the claim for an observer-owned event; ok is false for
// an event that needs none (held-owned types, and the escalations and end
// of a heartbeat_missing, which follow the sensor's own claim of it).
//
//   - heartbeat_missing (the transition): the endpoint and the revision of
//     its shared record (every sensor judges the same disconnect or the
//     same last refresh);
//   - no_heartbeat, new_station: the MAC, for a day;
//   - ip_mac_changed: the IP and its new MAC, for ten minutes;
//   - mac_conflict: the MAC and the endpoint, for an hour;
//   - policy_violation, lateral_movement: the flow's MACs, destination
//     address, protocol and port, for a minute.
func (f *Fleet) claimOf(ev schema.Event) (claim, bool) {
	info, ok := ev.Type.Info()
	if !ok || info.Owner != schema.OwnedByObserver {
		return claim{}, false
	}
	var parts []string
	var window time.Duration
	macs := func() {
		for _, m := range ev.MACs {
			parts = append(parts, m.String())
		}
	}
	if followsMissing(ev) {
		return claim{}, false
	}
	switch ev.Type {
	case schema.EventHeartbeatMissing:
		rev := f.revision(ev.EndpointID)
		if rev == 0 {
			return claim{}, false
		}
		parts, window = []string{ev.EndpointID, strconv.FormatUint(rev, 10)}, 24*time.Hour
	case schema.EventNoHeartbeat, schema.EventNewStation:
		macs()
		window = 24 * time.Hour
	case schema.EventIPMACChanged:
		d, ok := ev.Details.(*schema.IPMACChangedDetails)
		if !ok {
			return claim{}, false
		}
		parts, window = []string{d.IP.String(), d.NewMAC.String()}, 10*time.Minute
	case schema.EventMACConflict:
		macs()
		parts, window = append(parts, ev.EndpointID), time.Hour
	case schema.EventPolicyViolation, schema.EventLateralMovement:
		d, ok := ev.Details.(*schema.FlowDetails)
		if !ok {
			return claim{}, false
		}
		parts = []string{d.SrcMAC.String(), d.DstMAC.String(), d.DstIP.String(), d.Proto, strconv.Itoa(int(d.DstPort))}
		window = time.Minute
	default:
		return claim{}, false
	}
	if len(parts) == 0 {
		return claim{}, false
	}
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return claim{key: string(ev.Type) + "." + hex.EncodeToString(h.Sum(nil)[:16]), window: window}, true
}

// Claim records that this sensor raises the fact c stands for. It
// returns false when another sensor claimed it first.
func (f *Fleet) Claim(ctx context.Context, c claim) (bool, error) {
	f.mu.Lock()
	kv := f.claims
	f.mu.Unlock()
	if kv == nil {
		return false, errors.New("fleet: the claims bucket is not available")
	}
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	_, err := kv.Create(ctx, c.key, []byte(f.Name()), jetstream.KeyTTL(c.window))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("fleet: claim %s: %w", c.key, err)
}

// revision returns the revision of an endpoint's shared record as this
// sensor last received it (0: none).
func (f *Fleet) revision(id string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[id].revision
}
