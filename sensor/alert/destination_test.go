package alert

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestParseDestination(t *testing.T) {
	c := newCerts(t, t.TempDir(), "")
	d := mustDest(t, "tls://[::1]:6514?format=cef&min_severity=warning&types=heartbeat_missing,no_heartbeat"+
		"&name=soc&facility=auth&hostname=sensor-a&confirm=1s&timeout=3s&batch=64"+
		"&ca="+url.QueryEscape(c.CA)+"&cert="+url.QueryEscape(c.ClientCert)+"&key="+url.QueryEscape(c.ClientKey)+"&server_name=siem.test")
	if d.Scheme != "tls" || d.Addr != "[::1]:6514" || d.Format != FormatCEF || d.Filter.MinSeverity != schema.SeverityWarning ||
		len(d.Filter.Types) != 2 || d.Name != "soc" || d.Facility != syslog.FacilityAuth || d.Hostname != "sensor-a" ||
		d.Confirm != time.Second || d.Timeout != 3*time.Second || d.Batch != 64 ||
		d.TLS == nil || d.TLS.ServerName != "siem.test" || len(d.TLS.Certificates) != 1 || d.TLS.RootCAs == nil {
		t.Errorf("parsed %+v", d)
	}
	d = mustDest(t, "udp://192.0.2.1:514")
	if d.Name != "udp://192.0.2.1:514" || d.Format != FormatRFC5424 || d.Filter.MinSeverity != schema.SeverityNotice ||
		d.Facility != syslog.FacilityLocal0 || d.TLS != nil || d.Confirm != DefaultConfirm {
		t.Errorf("defaults %+v", d)
	}
	bad := map[string]string{
		"192.0.2.1:514":                                  "want e.g. tcp://",
		"//h:1":                                          "missing scheme: want one of ",
		"http://x:1":                                     `unsupported scheme "http"`,
		"tcp://host":                                     "want HOST:PORT",
		"tcp://host:99999":                               "port",
		"tcp://h:1/path":                                 "no user, path or fragment",
		"tcp://h:1?fromat=cef":                           "unknown option fromat: known options are format,",
		"tcp://h:1?format=xml":                           "want rfc5424, cef or json",
		"tcp://h:1?min_severity=loud":                    "min_severity",
		"tcp://h:1?types=heartbeat_mising":               `unknown event type "heartbeat_mising": known types are`,
		"tcp://h:1?facility=local9":                      "facility",
		"tcp://h:1?confirm=soon":                         "want a duration",
		"tcp://h:1?batch=0":                              "batch",
		"tcp://h:1?ca=/x":                                "apply only to relp+tls:// and tls://",
		"tls://h:1?ca=/nonexistent/ca.pem":               "no such file",
		"tls://h:1?cert=" + c.ClientCert:                 "cert and key must be given together",
		"tls://h:1?ca=" + c.ClientKey:                    "no PEM certificate",
		"tcp://h:1?format=cef&format=json":               "given 2 times",
		"tls://h:1?cert=" + c.CA + "&key=" + c.ClientKey: "client certificate",
	}
	for raw, want := range bad {
		_, err := ParseDestination(raw)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "alert destination") {
			t.Errorf("ParseDestination(%q) = %v, want an error containing %q", raw, err, want)
		}
	}
}

func TestFilter(t *testing.T) {
	f := Filter{MinSeverity: schema.SeverityWarning, Types: []schema.EventType{schema.EventNoHeartbeat}}
	for _, c := range []struct {
		ev   schema.Event
		want bool
	}{
		{schema.Event{Type: schema.EventNoHeartbeat, Severity: schema.SeverityError}, true},
		{schema.Event{Type: schema.EventNoHeartbeat, Severity: schema.SeverityWarning}, true},
		{schema.Event{Type: schema.EventNoHeartbeat, Severity: schema.SeverityNotice}, false},
		{schema.Event{Type: schema.EventMACConflict, Severity: schema.SeverityError}, false},
	} {
		if got := f.Match(&c.ev); got != c.want {
			t.Errorf("Match(%v %v) = %v", c.ev.Type, c.ev.Severity, got)
		}
	}
	if !DefaultFilter().Match(&schema.Event{Severity: schema.SeverityNotice}) || DefaultFilter().Match(&schema.Event{Severity: schema.SeverityInfo}) {
		t.Error("the default filter passes alerts (notice or worse) only")
	}
}

func TestSignatureIDsStable(t *testing.T) {
	for _, ti := range schema.Types() {
		if SignatureID(ti.Type) != ti.SignatureID {
			t.Errorf("SignatureID(%s) = %s, the table says %s", ti.Type, SignatureID(ti.Type), ti.SignatureID)
		}
	}
	// These are part of the external schema: changing one breaks SIEM rules.
	if SignatureID(schema.EventHeartbeatMissing) != "1002" || SignatureID(schema.EventAlertsLost) != "1011" {
		t.Error("signature ids renumbered")
	}
	if SignatureID("future_type") != "tapbeat:future_type" {
		t.Error("unknown type id")
	}
}
