// Package history owns tapbeat's embedded forensic history: a Badger v4
// database holding the events the correlator emits (state transitions and
// alerts), endpoint registry snapshots taken from hellos, IP<->MAC bindings
// with validity intervals, per-MAC traffic rolled up per minute, the
// unmanaged-device inventory and the latest state of every endpoint.
//
// Everything that ages is laid out under a per-day key prefix (UTC days), so
// retention drops whole days with DropPrefix and really gives disk space
// back; Badger's TTLs do not. Keys under the prefix "x/alert/" belong to the
// alert outbox and are never read, written or dropped here.
//
// Store is the writer the daemon holds open; its query methods (Endpoints,
// History, Alerts, Who, Traffic, Unmanaged) answer the forensic CLI, either
// in-process on a database nobody else holds or through the local API.
package history
