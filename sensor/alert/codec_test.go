package alert

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"pgregory.net/rapid"
)

func TestCodecRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.String()
		ev := schema.Event{
			Seq:            rapid.Uint64().Draw(t, "seq"),
			Type:           schema.EventType(str.Draw(t, "type")),
			Severity:       schema.Severity(rapid.IntRange(0, 7).Draw(t, "sev")),
			EndpointID:     str.Draw(t, "id"),
			EndpointName:   str.Draw(t, "name"),
			Org:            str.Draw(t, "org"),
			MACs:           genMACs(t, "macs"),
			IPs:            genIPs(t, "ips"),
			Status:         schema.Status(str.Draw(t, "status")),
			PreviousStatus: schema.Status(str.Draw(t, "prev")),
			Reason:         str.Draw(t, "reason"),
		}
		if rapid.Bool().Draw(t, "hasTime") {
			ev.Time = time.Unix(rapid.Int64Range(-1e10, 1e10).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC()
		}
		if rapid.Bool().Draw(t, "hasDetails") {
			// Typed details of a known type, or the raw details of a type
			// this build does not know.
			if rapid.Bool().Draw(t, "typed") {
				ev.Type = schema.EventAuthFailed
				ev.Details = &schema.AuthFailedDetails{Reason: str.Draw(t, "r"), CertificateName: str.Draw(t, "cn"),
					SuppressedTotal: rapid.Int().Draw(t, "n")}
			} else {
				ev.Type = "x_" + schema.EventType(str.Draw(t, "type2"))
				b, _ := json.Marshal(map[string]any{str.Draw(t, "k"): str.Draw(t, "v"), "n": json.Number("12345678901234567890")})
				ev.Details = schema.RawDetails(b)
			}
		}
		b, err := encodeEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		var got schema.Event
		if err := decodeEvent(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, ev)
		}
		// Every truncation is an error, never a panic or a silent success.
		for i := 0; i < len(b); i++ {
			if err := decodeEvent(b[:i], &schema.Event{}); err == nil {
				t.Fatalf("truncated at %d of %d decoded without error", i, len(b))
			}
		}
	})
}

func TestCodecVersion(t *testing.T) {
	err := decodeEvent([]byte{9, 1}, &schema.Event{})
	if err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("unknown version: %v", err)
	}
}
