// Package alert owns what happens to the sensor's alerts after the
// correlator raises them: the local JSON-lines alert log, the durable
// outbox beside the history, and delivery to syslog collectors (SIEMs) as RFC 5424
// messages with rfc5424, CEF or JSON bodies.
//
// # Flow
//
// The daemon writes each batch of events to history and, in the same batch
// (history.Store.Append's stage function), calls (*Outbox).Stage, which
// stages every event that some destination's filter accepts in the outbox's
// key space of the history database (SpaceName).
// It then appends the alerts to the JSONLog. Those two are the only work on
// the caller's path; neither waits for the network. Batches must be
// committed in sequence order (one writer), since a destination never goes
// back before its cursor.
//
// A Dispatcher runs one goroutine per destination: it reads the outbox after
// that destination's persisted cursor, formats and sends, advances the
// cursor once the transport's delivery rule (below) is met, and deletes
// outbox entries every destination has passed. After a reconnect or a
// restart everything after the cursor is sent again. A destination seen for
// the first time starts after the newest entry already in the outbox; the
// cursor of a destination no longer configured is deleted.
//
// # Delivery guarantees
//
// Each transport is one file that registers its URL scheme
// (registerTransport); the guarantees are:
//
// Delivery is at least once for relp, relp+tls, tcp and tls: a message may arrive more
// than once, and is never dropped while it is in the outbox. Every message
// carries the event's own number in [tapbeat@32473 seq="N"], so a SIEM can
// drop duplicates, and the destination's RFC 5424 sequenceId (7.3.1) in
// [meta sequenceId="N"]: 1 for the first message submitted to that
// destination, one more for each after it (only what its filter passes),
// 1 again after 2147483647. It is persisted with the destination's cursor,
// so a message sent again after a reconnect or restart keeps its number.
//
//   - relp and relp+tls (RELP, rsyslog's imrelp, optionally over TLS): the
//     collector acknowledges each message ("rsp 200"); the cursor advances
//     only over acknowledged messages. The strongest guarantee: a message is
//     confirmed once the collector has taken it into its own queue.
//   - tcp (RFC 6587 octet counting) and tls (RFC 5425): there is no
//     application acknowledgement, and a write that returns without error
//     proves nothing (the peer may have closed, or a mutual-TLS collector may
//     have refused the client and be discarding everything). The cursor
//     advances over a message only after the connection has stayed open,
//     with nothing read from the collector, for the confirm delay (default
//     500ms) after the message was written. A collector that crashes after
//     that window, or loses messages from its own volatile queue, can lose
//     them; everything not yet confirmed is sent again on reconnect.
//   - udp (RFC 5426): best effort. The cursor advances when the datagram is
//     handed to the kernel; datagrams lost on the network or by a stopped
//     collector are not detected. An alert larger than one datagram is
//     skipped and logged.
//
// For tls and relp+tls the collector's certificate is always verified (ca=, or the
// system roots), TLS 1.2 is the minimum and 1.3 is preferred, and a client
// certificate (cert=, key=) is offered when configured.
//
// # Back-pressure and loss
//
// Senders never block Stage: the outbox grows on disk while a collector is
// slow or down, up to OutboxOptions.MaxEntries. Past that, the oldest entries
// are dropped; each destination that had not confirmed them counts the
// alerts it lost, persists the count, logs it at error level, and raises a
// schema.EventAlertsLost event through DispatcherOptions.OnLoss.
//
// # Destinations
//
// See ParseDestination for the URL syntax and every option, and Send for
// checking a destination by hand ("tapbeat alert-test").
package alert
