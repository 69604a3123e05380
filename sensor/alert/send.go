package alert

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Send delivers evs to d directly, without the outbox, and returns once
// they count as delivered by the destination's transport rule: sent (udp),
// acknowledged (relp), or sent with the connection still open after the
// confirm delay (tcp, tls). It is meant for checking a destination, e.g.
// from the command line; the daemon delivers through the Dispatcher.
// Events the destination's filter rejects are still sent. Their
// sequenceIds count from 1, as for a new destination.
func Send(ctx context.Context, d Destination, evs []schema.Event, version string) error {
	cn, err := dial(ctx, &d)
	if err != nil {
		return err
	}
	defer cn.close()
	f := Formatter{Format: d.Format, Facility: d.Facility, Hostname: d.Hostname,
		ProcID: strconv.Itoa(os.Getpid()), Version: version}
	var framed, msg []byte
	var msgs [][]byte
	for i := range evs {
		if msg, err = f.Append(msg[:0], &evs[i], NextSequenceID(uint32(i))); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
		framed = syslog.AppendOctetCounted(framed, msg)
		msgs = append(msgs, append([]byte(nil), msg...))
	}
	if err := cn.send(framed, msgs, d.Timeout); err != nil {
		return refusedHint(&d, fmt.Errorf("%s: not delivered: %w", d.Name, err))
	}
	if !cn.stream {
		return nil
	}
	t := time.NewTimer(d.Confirm)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-cn.dead:
		return refusedHint(&d, fmt.Errorf("%s: not delivered: %w", d.Name, cn.err))
	case <-t.C:
		return nil
	}
}

// refusedHint explains a TLS session the collector ended before anything
// was confirmed.
func refusedHint(d *Destination, err error) error {
	if !transports[d.Scheme].tls {
		return err
	}
	return fmt.Errorf("%w (the collector ends TLS sessions before anything is confirmed: it may require a client certificate it trusts, see cert= and key=)", err)
}
