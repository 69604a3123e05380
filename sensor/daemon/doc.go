// Package daemon owns `tapbeat run`: the configuration file and the wiring
// of capture, the LAN-zone listener, the correlator, history, alert sinks,
// the local API and metrics into one process with one lifetime.
package daemon
