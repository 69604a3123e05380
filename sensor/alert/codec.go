package alert

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
)

// Outbox values are a compact binary form of sensor.Event, cheaper to
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

func encodeEvent(b []byte, ev *sensor.Event) ([]byte, error) {
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
	for _, list := range [][]string{ev.MACs, ev.IPs} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = appendString(b, s)
		}
	}
	b = appendString(b, string(ev.Status))
	b = appendString(b, string(ev.PreviousStatus))
	b = appendString(b, ev.Reason)
	if len(ev.Details) == 0 {
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

func (d *decoder) strings() []string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.string()
	}
	return out
}

// decodeEvent decodes an outbox value (the binary form, or JSON).
func decodeEvent(v []byte, ev *sensor.Event) error {
	_, err := decodeEventDetails(v, ev, true)
	return err
}

// decodeEventDetails decodes an outbox value and also returns the details
// as JSON ("" when there are none, or for a JSON value). Unless withMap is
// set, ev.Details is left nil: the delivery path formats from the JSON.
func decodeEventDetails(v []byte, ev *sensor.Event, withMap bool) (string, error) {
	if len(v) > 0 && v[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		return "", dec.Decode(ev)
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
	ev.Type = sensor.EventType(d.string())
	ev.Severity = sensor.Severity(d.byte())
	ev.EndpointID = d.string()
	ev.EndpointName = d.string()
	ev.Org = d.string()
	ev.MACs = d.strings()
	ev.IPs = d.strings()
	ev.Status = sensor.Status(d.string())
	ev.PreviousStatus = sensor.Status(d.string())
	ev.Reason = d.string()
	details := d.string()
	if d.err != nil {
		return "", d.err
	}
	if details != "" && withMap {
		dec := json.NewDecoder(strings.NewReader(details))
		dec.UseNumber()
		if err := dec.Decode(&ev.Details); err != nil {
			return "", fmt.Errorf("outbox value details: %w", err)
		}
	}
	return details, nil
}
