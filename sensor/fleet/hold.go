package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A node cut off from the majority of the fleet's nodes can write nothing
// shared, yet its Raft groups go on campaigning every 4-9 s, each time in a
// higher term. NATS's Raft has no pre-vote, so when the node is routed to the
// majority again those higher terms make the majority's stream leaders step
// down, and the whole fleet takes no writes until new leaders are elected
// (5-11 s measured). The embedded node therefore stops its JetStream while it
// is cut off (its Raft state stays on disk) and starts it again once the
// majority is routed: it comes back at the terms it left with and follows
// the leaders the majority kept. A fleet of two has no majority to protect
// and keeps campaigning.

// holdEvery is how often the node's routes are checked. A cut route is
// closed after about 2 s without an answer to its pings (node.go), so the
// node stops JetStream well before Raft's shortest election timeout (4 s).
const holdEvery = 250 * time.Millisecond

// holdJetStream stops and restarts the embedded node's JetStream as the
// majority of the fleet's nodes is routed or not.
func (f *Fleet) holdJetStream(ctx context.Context) {
	t := time.NewTicker(holdEvery)
	defer t.Stop()
	var retryAt time.Time // after a failed start
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Until the fleet was ready once, the node may simply not have
		// met its peers yet.
		if !f.isReady() {
			continue
		}
		routed, nodes, ok := f.routedNodes()
		// Two nodes cut apart leave no majority anywhere to protect, and a
		// node that keeps campaigning gets the pair a leader soonest once
		// they meet again.
		if !ok || nodes < 3 {
			continue
		}
		majority := 2*(routed+1) > nodes
		running := f.node.srv.JetStreamEnabled()
		switch {
		case !majority && running:
			why := fmt.Sprintf("cut off from the majority of the fleet (routes to %d of the other %d sensors): this sensor's shared state waits until they are back", routed, nodes-1)
			f.log.Warn("fleet: "+why+"; JetStream stopped", "routed", routed, "nodes", nodes)
			f.mu.Lock()
			f.cutOffWhy = why
			f.mu.Unlock()
			if err := f.node.srv.ShutdownJetStream(); err != nil {
				f.log.Warn("fleet: stop JetStream while cut off", "err", err)
			}
		case majority && !running && time.Now().After(retryAt):
			f.log.Info("fleet: the majority of the fleet is routed again; JetStream starts", "routed", routed, "nodes", nodes)
			err := f.node.srv.EnableJetStream(&server.JetStreamConfig{StoreDir: f.node.storeDir, MaxMemory: jsMaxMemory, MaxStore: jsMaxStore})
			if err != nil {
				f.log.Warn("fleet: start JetStream again; retrying in 5 s", "err", err)
				retryAt = time.Now().Add(5 * time.Second)
				continue
			}
			f.mu.Lock()
			f.cutOffWhy = ""
			f.mu.Unlock()
		}
	}
}

// routedNodes returns how many other nodes the embedded node has routes to,
// and how many nodes the fleet has: its configured peers and every sensor
// its registry knows, itself included (the Raft groups count a node that is
// down until it is removed).
func (f *Fleet) routedNodes() (routed, nodes int, ok bool) {
	names, err := f.node.routedNames()
	if err != nil {
		return 0, 0, false
	}
	known := map[string]bool{f.Name(): true}
	for _, r := range f.Sensors() {
		known[r.Name] = true
	}
	return len(names), max(len(f.opts.Config.Peers)+1, len(known)), true
}

// cutOff returns why this node's JetStream is held, or "" while it runs.
func (f *Fleet) cutOff() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cutOffWhy
}
