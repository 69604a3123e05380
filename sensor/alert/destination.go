package alert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Format is a message body format.
type Format string

// Body formats. Every format is sent inside an RFC 5424 message whose
// structured data carries the event fields and the sequence id.
const (
	// FormatRFC5424 puts a one-line human summary in the message body.
	FormatRFC5424 Format = "rfc5424"
	// FormatCEF puts an ArcSight CEF:0 record in the body.
	FormatCEF Format = "cef"
	// FormatJSON puts the event's JSON (schema.Event's schema) in the body.
	FormatJSON Format = "json"
)

// Filter selects the events a sink wants.
type Filter struct {
	// MinSeverity is the least severe severity accepted.
	MinSeverity schema.Severity
	// Types, when not empty, restricts the sink to these event types.
	Types []schema.EventType
}

// DefaultFilter accepts every alert (severity notice or more severe).
func DefaultFilter() Filter { return Filter{MinSeverity: schema.SeverityNotice} }

// Match reports whether the filter accepts ev.
func (f Filter) Match(ev *schema.Event) bool {
	if !ev.Severity.AtLeast(f.MinSeverity) {
		return false
	}
	return len(f.Types) == 0 || slices.Contains(f.Types, ev.Type)
}

// Destination is one configured syslog collector.
type Destination struct {
	// Name identifies the destination's persisted cursor and loss counter;
	// keep it stable across restarts. Defaults to "SCHEME://HOST:PORT".
	Name string
	// Scheme names the transport: "udp", "tcp", "tls", "relp" or
	// "relp+tls" (Schemes).
	Scheme string
	// Addr is the collector's HOST:PORT.
	Addr string
	// Format is the body format.
	Format Format
	// Filter selects the events sent.
	Filter Filter
	// Facility is the syslog facility of every message.
	Facility syslog.Facility
	// Hostname is the RFC 5424 HOSTNAME; defaults to the machine's name.
	Hostname string
	// TLS is the client configuration for tls:// and relp+tls:// (nil
	// otherwise).
	TLS *tls.Config
	// Confirm is how long a tcp or tls connection must stay open after a
	// write before the messages written count as delivered.
	Confirm time.Duration
	// Timeout bounds connecting and each write.
	Timeout time.Duration
	// Batch is the most messages sent per write.
	Batch int
}

// Defaults for destination options.
const (
	DefaultConfirm = 500 * time.Millisecond
	DefaultTimeout = 10 * time.Second
	DefaultBatch   = 512
)

var destOptions = []string{"format", "min_severity", "types", "name", "facility", "hostname", "confirm", "timeout", "batch", "ca", "cert", "key", "server_name"}

// ParseDestination parses a collector URL:
//
//	udp://HOST:PORT?OPTIONS   RFC 5426, one message per datagram, best effort
//	tcp://HOST:PORT?OPTIONS   RFC 6587 octet counting, at least once
//	tls://HOST:PORT?OPTIONS   RFC 5425 over TLS 1.2 or 1.3, at least once
//	relp://HOST:PORT?OPTIONS  RELP (rsyslog imrelp): each message acknowledged,
//	                          at least once
//	relp+tls://HOST:PORT?OPTIONS  RELP over TLS (imrelp tls="on")
//
// Options (all optional):
//
//	format=rfc5424|cef|json  body format (default rfc5424)
//	min_severity=NAME        least severe severity sent: emergency, alert,
//	                         critical, error, warning, notice (default), info, debug
//	types=T1,T2              send only these event types (default all)
//	name=NAME                stable name for the persisted cursor (default SCHEME://HOST:PORT)
//	facility=NAME            syslog facility, a name (local0, default) or 0-23
//	hostname=NAME            RFC 5424 HOSTNAME (default: this machine's host name)
//	confirm=DURATION         tcp/tls: time a connection must stay open after a
//	                         write before it counts as delivered (default 500ms)
//	timeout=DURATION         connect and write timeout (default 10s)
//	batch=N                  most messages per write (default 512)
//	ca=FILE                  tls, relp+tls: PEM CA bundle that signed the collector's
//	                         certificate (default: the system roots)
//	cert=FILE, key=FILE      tls, relp+tls: PEM client certificate and key, for
//	                         collectors that require mutual TLS
//	server_name=NAME         tls, relp+tls: name to verify in the collector's
//	                         certificate (default: HOST)
//
// The collector's certificate is always verified. Certificate files are read
// here, so a missing or bad file is reported at configuration time.
func ParseDestination(raw string) (Destination, error) {
	d, err := parseDestination(raw)
	if err != nil {
		return Destination{}, fmt.Errorf("alert destination %q: %w", redact(raw), err)
	}
	return d, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

func parseDestination(raw string) (Destination, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Destination{}, fmt.Errorf("not a URL: %w (want e.g. tcp://siem.example:514?format=cef)", err)
	}
	d := Destination{
		Scheme:   strings.ToLower(u.Scheme),
		Format:   FormatRFC5424,
		Filter:   DefaultFilter(),
		Facility: syslog.FacilityLocal0,
		Confirm:  DefaultConfirm,
		Timeout:  DefaultTimeout,
		Batch:    DefaultBatch,
	}
	t, ok := transports[d.Scheme]
	switch {
	case d.Scheme == "":
		return d, fmt.Errorf("missing scheme: want one of %s, then ://HOST:PORT", strings.Join(Schemes(), ", "))
	case !ok:
		return d, fmt.Errorf("unsupported scheme %q: want one of %s", u.Scheme, strings.Join(Schemes(), ", "))
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return d, errors.New("want only SCHEME://HOST:PORT?OPTIONS (no user, path or fragment)")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return d, errors.New("want HOST:PORT after the scheme, e.g. tcp://192.0.2.10:514")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return d, fmt.Errorf("port %q: want 1-65535", port)
	}
	d.Addr = net.JoinHostPort(host, port)
	d.Name = d.Scheme + "://" + d.Addr
	d.Hostname, _ = os.Hostname()

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return d, fmt.Errorf("options: %w", err)
	}
	var unknown []string
	for k, v := range q {
		if !slices.Contains(destOptions, k) {
			unknown = append(unknown, k)
		} else if len(v) > 1 {
			return d, fmt.Errorf("option %s given %d times", k, len(v))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return d, fmt.Errorf("unknown option %s: known options are %s", strings.Join(unknown, ", "), strings.Join(destOptions, ", "))
	}
	if v := q.Get("format"); v != "" {
		switch f := Format(strings.ToLower(v)); f {
		case FormatRFC5424, FormatCEF, FormatJSON:
			d.Format = f
		default:
			return d, fmt.Errorf("format %q: want rfc5424, cef or json", v)
		}
	}
	if v := q.Get("min_severity"); v != "" {
		if d.Filter.MinSeverity, err = schema.ParseSeverity(strings.ToLower(v)); err != nil {
			return d, fmt.Errorf("min_severity: %w", err)
		}
	}
	if v := q.Get("types"); v != "" {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			typ, err := schema.ParseEventType(t)
			if err != nil {
				return d, fmt.Errorf("types: %w", err)
			}
			d.Filter.Types = append(d.Filter.Types, typ)
		}
	}
	if v := q.Get("name"); v != "" {
		d.Name = v
	}
	if v := q.Get("facility"); v != "" {
		if d.Facility, err = syslog.ParseFacility(v); err != nil {
			return d, err
		}
	}
	if v := q.Get("hostname"); v != "" {
		d.Hostname = v
	}
	for _, o := range []struct {
		name string
		dst  *time.Duration
	}{{"confirm", &d.Confirm}, {"timeout", &d.Timeout}} {
		if v := q.Get(o.name); v != "" {
			dur, err := time.ParseDuration(v)
			if err != nil || dur < 0 {
				return d, fmt.Errorf("%s %q: want a duration such as 500ms or 10s", o.name, v)
			}
			*o.dst = dur
		}
	}
	if d.Timeout == 0 {
		return d, errors.New("timeout must be more than 0")
	}
	if v := q.Get("batch"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65536 {
			return d, fmt.Errorf("batch %q: want 1-65536", v)
		}
		d.Batch = n
	}
	tlsOpts := q.Has("ca") || q.Has("cert") || q.Has("key") || q.Has("server_name")
	if !t.tls {
		if tlsOpts {
			var tlsSchemes []string
			for _, sc := range Schemes() {
				if transports[sc].tls {
					tlsSchemes = append(tlsSchemes, sc+"://")
				}
			}
			return d, fmt.Errorf("ca, cert, key and server_name apply only to %s, not %s://", strings.Join(tlsSchemes, " and "), d.Scheme)
		}
		return d, nil
	}
	d.TLS, err = clientTLS(host, q.Get("ca"), q.Get("cert"), q.Get("key"), q.Get("server_name"))
	return d, err
}

func clientTLS(host, ca, cert, key, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		// rsyslog's gtls driver and many collectors negotiate TLS 1.2; 1.3
		// is preferred when offered.
		MinVersion: tls.VersionTLS12,
		ServerName: host,
	}
	if serverName != "" {
		cfg.ServerName = serverName
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate found: want the collector CA's certificate in PEM", ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("cert and key must be given together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
