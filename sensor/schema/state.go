package schema

import (
	"net/netip"
	"time"
)

// EndpointState is the sensor's view of one enrolled endpoint.
type EndpointState struct {
	ID            string      `json:"endpoint_id"`
	Name          string      `json:"name"`
	Org           string      `json:"org"`
	Health        Health      `json:"health,omitempty"`
	Reasons       []string    `json:"reasons,omitempty"`
	Status        Status      `json:"status"`
	StatusSince   time.Time   `json:"status_since"`
	LastHeartbeat time.Time   `json:"last_heartbeat"`
	Connected     bool        `json:"connected"`
	Interfaces    []Interface `json:"interfaces,omitempty"`
	Users         []string    `json:"users,omitempty"`
}

// MACs returns the MACs of all the endpoint's interfaces.
func (s *EndpointState) MACs() []MAC {
	out := make([]MAC, 0, len(s.Interfaces))
	for _, i := range s.Interfaces {
		out = append(out, i.MAC)
	}
	return out
}

// Station is a MAC that sent traffic and belongs to no enrolled endpoint: the
// unmanaged inventory.
type Station struct {
	MAC       MAC          `json:"mac"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	FirstSeen time.Time    `json:"first_seen"`
	LastSeen  time.Time    `json:"last_seen"`
	Packets   uint64       `json:"packets"`
	Bytes     uint64       `json:"bytes"`
}

// AtRiskEndpoint is one entry of the at-risk list.
type AtRiskEndpoint struct {
	EndpointID string       `json:"endpoint_id"`
	Name       string       `json:"name"`
	Status     Status       `json:"status"`
	MACs       []MAC        `json:"macs"`
	IPs        []netip.Addr `json:"ips,omitempty"`
}

// AtRiskList is what the LAN zone pushes to every endpoint so healthy ones
// can stop talking to unhealthy ones: the red, yellow and missing endpoints.
type AtRiskList struct {
	Generated time.Time        `json:"generated"`
	Endpoints []AtRiskEndpoint `json:"endpoints"`
}
