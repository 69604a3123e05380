// Package sensor owns tapbeat's correlation: the rules that turn heartbeats,
// observed traffic, flow starts and capture health into endpoint states and
// events.
//
// The Correlator is pure logic: it does no I/O, reads time only from an
// injected Clock, and given the same inputs in the same order it produces the
// same events with the same sequence numbers. It is not safe for concurrent
// use; Engine wraps it for the daemon, serialising inputs and publishing the
// events it emits.
//
// The values it reads and the events it emits are defined in sensor/schema,
// below every part that uses them.
package sensor
