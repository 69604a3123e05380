package isotest

import "testing"

// endToEnd drives the daemon inside the appliance from the host: an agent
// enrolled against the sensor directory heartbeats through the forwarded
// LAN-zone port, and the admin API (forwarded too) is asked what the sensor
// knows.
type endToEnd struct {
	dir string
}

// provision runs tapbeat init and enroll on the host into dir, as an
// administrator would on a workstation before writing dir to the data disk.
func provision(t *testing.T, tapbeat, dir string) *endToEnd {
	t.Fatal("the end-to-end checks through the daemon are not written yet")
	return nil
}

// check verifies through the forwarded ports that the agent's endpoint is
// known and the injected MAC is unmanaged; afterReboot also requires the
// history recorded during the previous boot.
func (e *endToEnd) check(t *testing.T, lanPort, adminPort int, afterReboot bool) {
	t.Fatal("the end-to-end checks through the daemon are not written yet")
}
