// Package schema defines the values every part of tapbeat exchanges: MAC
// addresses, the health an endpoint reports and the status the sensor
// concludes, what capture and the LAN zone hand the correlator (Hello,
// Heartbeat, TrafficSummary, Flow, Binding, CaptureHealth), the at-risk
// list, and the events the correlator emits with the one table of event
// types (types.go) that formatting, filters, history and the CLI read.
//
// It sits below every other package and imports none of them. Its JSON
// forms are the external schema: history, syslog bodies, the local API and
// the CLI's --format json.
package schema
