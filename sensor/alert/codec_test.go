package alert

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tapbeat/tapbeat/sensor"
)

func TestCodecRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.String()
		ev := sensor.Event{
			Seq:            rapid.Uint64().Draw(t, "seq"),
			Type:           sensor.EventType(str.Draw(t, "type")),
			Severity:       sensor.Severity(rapid.IntRange(0, 7).Draw(t, "sev")),
			EndpointID:     str.Draw(t, "id"),
			EndpointName:   str.Draw(t, "name"),
			Org:            str.Draw(t, "org"),
			MACs:           rapid.SliceOfN(str, 0, 3).Draw(t, "macs"),
			IPs:            rapid.SliceOfN(str, 0, 3).Draw(t, "ips"),
			Status:         sensor.Status(str.Draw(t, "status")),
			PreviousStatus: sensor.Status(str.Draw(t, "prev")),
			Reason:         str.Draw(t, "reason"),
		}
		if rapid.Bool().Draw(t, "hasTime") {
			ev.Time = time.Unix(rapid.Int64Range(-1e10, 1e10).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC()
		}
		if len(ev.MACs) == 0 {
			ev.MACs = nil
		}
		if len(ev.IPs) == 0 {
			ev.IPs = nil
		}
		if rapid.Bool().Draw(t, "hasDetails") {
			ev.Details = map[string]any{str.Draw(t, "k"): str.Draw(t, "v"), "n": json.Number("12345678901234567890")}
		}
		b, err := encodeEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		var got sensor.Event
		if err := decodeEvent(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, ev)
		}
		// Every truncation is an error, never a panic or a silent success.
		for i := 0; i < len(b); i++ {
			if err := decodeEvent(b[:i], &sensor.Event{}); err == nil {
				t.Fatalf("truncated at %d of %d decoded without error", i, len(b))
			}
		}
	})
}

func TestCodecVersion(t *testing.T) {
	err := decodeEvent([]byte{9, 1}, &sensor.Event{})
	if err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("unknown version: %v", err)
	}
}
