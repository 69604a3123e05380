// Package fleet owns what several sensors of one organisation share: an
// embedded NATS JetStream node per sensor (cluster routes over mutual TLS
// with fleet certificates from the organisation's CA), or a connection to
// an operator's own NATS cluster; the replicated trust-store journal, the
// per-endpoint heartbeat state, the sensor registry, the de-duplicated
// event stream, and fleet-wide queries by request/reply.
//
// A sensor without a [fleet] table never imports a running part of this
// package: no NATS server starts and nothing listens on a fleet port.
//
// Files in the sensor directory (keys 0600):
//
//	fleet.key, fleet.crt  this sensor's fleet identity (OU tapbeat-fleet)
//	fleet.token           the loopback client port's token, new at every start
//	fleet-js/             the node's JetStream storage
package fleet
