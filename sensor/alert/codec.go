package alert

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Outbox values are a compact binary form of schema.Event, cheaper to
// decode than JSON on the delivery path:
//
//	byte     codecVersion (1)
//	uvarint  Seq
//	byte     1 if Time is set, then varint Unix seconds and uvarint nanoseconds
//	string   Type                     (string = uvarint length, bytes)
//	byte     Severity
//	string   EndpointID, EndpointName, Org
//	uvarint  count, then strings      MACs, then IPs
//	string   Status, PreviousStatus, Reason
//	string   Details as JSON ("" when empty)
//
// Times are kept in UTC.
const codecVersion = 1

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeEvent(b []byte, ev *schema.Event) ([]byte, error) {
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, ev.Seq)
	if ev.Time.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, ev.Time.Unix())
		b = binary.AppendUvarint(b, uint64(ev.Time.Nanosecond()))
	}
	b = appendString(b, string(ev.Type))
	b = append(b, byte(ev.Severity))
	b = appendString(b, ev.EndpointID)
	b = appendString(b, ev.EndpointName)
	b = appendString(b, ev.Org)
	b = binary.AppendUvarint(b, uint64(len(ev.MACs)))
	for _, m := range ev.MACs {
		b = binary.AppendUvarint(b, 17)
		b = m.AppendTo(b)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.IPs)))
	for _, ip := range ev.IPs {
		b = appendString(b, ip.String())
	}
	b = appendString(b, string(ev.Status))
	b = appendString(b, string(ev.PreviousStatus))
	b = appendString(b, ev.Reason)
	if ev.Details == nil {
		return append(b, 0), nil
	}
	d, err := json.Marshal(ev.Details)
	if err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	return appendString(b, string(d)), nil
}

var errTruncated = errors.New("truncated outbox value")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// list decodes a count, then that many strings with parse.
func list[T any](d *decoder, parse func(string) (T, error)) []T {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		s := d.string()
		if d.err != nil {
			return nil
		}
		v, err := parse(s)
		if err != nil {
			d.err = fmt.Errorf("outbox value: %w", err)
			return nil
		}
		out[i] = v
	}
	return out
}

// decodeEvent decodes an outbox value (the binary form, or JSON).
func decodeEvent(v []byte, ev *schema.Event) error {
	_, err := decodeEventDetails(v, ev, true)
	return err
}

// decodeEventDetails decodes an outbox value and also returns the details
// as JSON ("" when there are none, or for a JSON value). Unless typed is
// set, ev.Details is left nil: the delivery path formats from the JSON.
func decodeEventDetails(v []byte, ev *schema.Event, typed bool) (string, error) {
	if len(v) > 0 && v[0] == '{' {
		return "", json.Unmarshal(v, ev)
	}
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != codecVersion {
		return "", fmt.Errorf("outbox value version %d: this build reads version %d", ver, codecVersion)
	}
	ev.Seq = d.uvarint()
	if d.byte() == 1 {
		sec := d.varint()
		ev.Time = time.Unix(sec, int64(d.uvarint())).UTC()
	}
	ev.Type = schema.EventType(d.string())
	ev.Severity = schema.Severity(d.byte())
	ev.EndpointID = d.string()
	ev.EndpointName = d.string()
	ev.Org = d.string()
	ev.MACs = list(&d, schema.ParseMAC)
	ev.IPs = list(&d, netip.ParseAddr)
	ev.Status = schema.Status(d.string())
	ev.PreviousStatus = schema.Status(d.string())
	ev.Reason = d.string()
	details := d.string()
	if d.err != nil {
		return "", d.err
	}
	if details != "" && typed {
		dt, err := schema.DecodeDetails(ev.Type, []byte(details))
		if err != nil {
			return "", fmt.Errorf("outbox value: %w", err)
		}
		ev.Details = dt
	}
	return details, nil
}
