// Package alert owns what happens to the sensor's alerts after the
// correlator raises them: the local JSON-lines alert log, the durable
// outbox in Badger, and delivery to syslog collectors (SIEMs).
//
// # Flow
//
// The daemon writes each batch of events to history and, in the same Badger
// WriteBatch, calls (*Outbox).Stage, which stages every alert that some
// destination wants under the key prefix "x/alert/". It then appends the
// alerts to the JSONLog. Those two are the only work on the caller's path.
// A Dispatcher runs one goroutine per destination: it reads the outbox after
// that destination's persisted cursor, formats and sends, advances the
// cursor once the transport's delivery rule (below) is met, and deletes
// outbox entries every destination has passed. After a reconnect or a
// restart, everything after the cursor is sent again.
//
// # Delivery guarantees
//
// Delivery is at least once for tcp, tls and relp: a message may arrive more
// than once, never zero times while it is in the outbox. Every message
// carries the event's sequence number in [meta sequenceId="N"] and in
// [tapbeat@32473 seq="N"], so a SIEM can drop duplicates.
//
//   - relp: each message is acknowledged by the collector (RELP "rsp 200");
//     the cursor advances only over acknowledged messages. The strongest
//     guarantee.
//   - tcp and tls: TCP gives no application acknowledgement, and a write that
//     returns without error proves nothing (the peer may have closed, or a
//     mutual-TLS collector may have refused the client and be discarding
//     everything). The cursor therefore advances over a message only after
//     the connection has stayed open, with nothing read from the collector,
//     for the confirm delay (default 500ms) after the message was written.
//     A collector that crashes within that window, or that accepts bytes
//     into its own volatile queue and then loses them, can still lose
//     messages; everything not yet confirmed is sent again on reconnect.
//   - udp: best effort. The cursor advances when the datagram is handed to
//     the kernel; datagrams lost on the network or by a stopped collector are
//     not detected.
//
// # Back-pressure and loss
//
// Senders never block Stage: the outbox grows on disk while a collector is
// slow or down, up to OutboxOptions.MaxEntries. Past that, the oldest entries
// are dropped; each destination that had not passed them counts the alerts
// it lost, persists the count, logs it, and raises a sensor.EventAlertsLost
// event through the OnLoss callback.
//
// # Destinations
//
// See ParseDestination for the URL syntax and every option.
package alert
