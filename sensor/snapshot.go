package sensor

import (
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Snapshot is the correlator state worth keeping across a sensor restart.
type Snapshot struct {
	NextSeq   uint64                 `json:"next_seq"`
	Endpoints []schema.EndpointState `json:"endpoints"`
	// Alerted lists MACs already reported as no_heartbeat, so a restart does
	// not report them again.
	Alerted []schema.MAC `json:"alerted,omitempty"`
	// HeartbeatInterval is the interval in force when the snapshot was
	// taken: a sensor restarted with a shorter one judges its restored
	// endpoints by it until they heartbeat at the new pace.
	HeartbeatInterval time.Duration `json:"heartbeat_interval,omitempty"`
}
