package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// RefusedError is why a peer's certificate was refused. Reason is short and
// stable ("no client certificate", "revoked", ...); the listener puts it in
// auth_failed events.
type RefusedError struct {
	Reason string
	ID     string // certificate CN, when there was a certificate
	Name   string // DNS SAN, when there was a certificate
}

// Error says who was refused and why.
func (e *RefusedError) Error() string {
	if e.ID != "" {
		return fmt.Sprintf("refused certificate %s (%s): %s", e.ID, e.Name, e.Reason)
	}
	return "refused: " + e.Reason
}

// Refusal reasons.
const (
	ReasonNoCertificate = "no client certificate"
	ReasonUnknownCA     = "certificate not issued by this organisation's CA"
	ReasonExpired       = "certificate expired or not yet valid"
	ReasonNotEnrolled   = "certificate signed by the CA but not enrolled"
	ReasonRevoked       = "certificate revoked"
	ReasonAdminOnLAN    = "administrator certificate offered to the LAN zone"
	ReasonEndpointAdmin = "endpoint certificate offered to the admin API"
	ReasonBadCert       = "invalid certificate"
)

// Verifier accepts a client certificate only if the organisation's CA
// signed it, it is valid now, and the trust store holds it as an active
// certificate of the right kind. It runs in tls.Config.VerifyConnection,
// which Go also calls on session resumption, so a revoked certificate
// cannot resume.
type Verifier struct {
	roots *x509.CertPool
	trust *TrustStore
	admin bool
	// refreshEvery > 0 makes the verifier refresh the trust store itself
	// (for servers that do not poll it).
	refreshEvery time.Duration
	mu           sync.Mutex
	lastRefresh  time.Time
}

// NewVerifier returns a verifier for endpoint certificates (admin false) or
// administrator certificates (admin true).
func NewVerifier(ca *x509.Certificate, trust *TrustStore, admin bool) *Verifier {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Verifier{roots: pool, trust: trust, admin: admin}
}

// Verify checks the peer certificate of a handshake.
func (v *Verifier) Verify(cs tls.ConnectionState) (Entry, error) {
	if len(cs.PeerCertificates) == 0 {
		return Entry{}, &RefusedError{Reason: ReasonNoCertificate}
	}
	leaf := cs.PeerCertificates[0]
	ref := func(reason string) error {
		r := &RefusedError{Reason: reason, ID: leaf.Subject.CommonName}
		if len(leaf.DNSNames) > 0 {
			r.Name = leaf.DNSNames[0]
		}
		return r
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var inv x509.CertificateInvalidError
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			return Entry{}, ref(ReasonExpired)
		case errors.As(err, &ua):
			return Entry{}, ref(ReasonUnknownCA)
		}
		return Entry{}, ref(ReasonBadCert + ": " + err.Error())
	}
	if v.refreshEvery > 0 {
		v.mu.Lock()
		if time.Since(v.lastRefresh) >= v.refreshEvery {
			_, _ = v.trust.Refresh()
			v.lastRefresh = time.Now()
		}
		v.mu.Unlock()
	}
	e, ok := v.trust.Lookup(FingerprintOf(leaf.Raw))
	switch {
	case !ok:
		return Entry{}, ref(ReasonNotEnrolled)
	case !e.Active():
		return Entry{}, ref(ReasonRevoked)
	case e.Admin && !v.admin:
		return Entry{}, ref(ReasonAdminOnLAN)
	case !e.Admin && v.admin:
		return Entry{}, ref(ReasonEndpointAdmin)
	}
	return e, nil
}

// ServerCert holds the sensor's server certificate and reloads it when the
// file changes (the certificate is re-issued when the LAN-zone addresses
// change; the key stays, and so does the agents' pin).
type ServerCert struct {
	dir   string
	cert  atomic.Pointer[tls.Certificate]
	mtime atomic.Int64
}

// LoadServerCert loads dir's server key and certificate.
func LoadServerCert(dir string) (*ServerCert, error) {
	s := &ServerCert{dir: dir}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ServerCert) load() error {
	cp := filepath.Join(s.dir, ServerCertFile)
	st, err := os.Stat(cp)
	if err != nil {
		return fmt.Errorf("load server certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(cp, filepath.Join(s.dir, ServerKeyFile))
	if err != nil {
		return fmt.Errorf("load server certificate: %w", err)
	}
	s.cert.Store(&c)
	s.mtime.Store(st.ModTime().UnixNano())
	return nil
}

// Reload loads the certificate again if its file changed.
func (s *ServerCert) Reload() error {
	st, err := os.Stat(filepath.Join(s.dir, ServerCertFile))
	if err != nil {
		return fmt.Errorf("reload server certificate: %w", err)
	}
	if st.ModTime().UnixNano() == s.mtime.Load() {
		return nil
	}
	return s.load()
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// ServerConfig returns a TLS 1.3-only server configuration that accepts a
// client only if v accepts its certificate. Session tickets stay on so a
// reconnect storm is cheap; v runs on resumption too.
func ServerConfig(cert *ServerCert, v *Verifier) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: cert.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.Verify(cs)
			return err
		},
	}
}

// AdminServerConfig returns the configuration for the admin API's server
// on the management address: TLS 1.3, mutual, accepting only active
// administrator certificates issued by dir's authority. The trust store is
// re-read at most once a second, so revocations apply within a second.
func AdminServerConfig(dir string) (*tls.Config, error) {
	a, err := Open(dir)
	if err != nil {
		return nil, err
	}
	ts, err := OpenTrustStore(dir)
	if err != nil {
		return nil, err
	}
	cert, err := LoadServerCert(dir)
	if err != nil {
		return nil, err
	}
	v := NewVerifier(a.CACertificate(), ts, true)
	v.refreshEvery = time.Second
	v.lastRefresh = time.Now()
	return ServerConfig(cert, v), nil
}

// ClientConfig returns a TLS 1.3 client configuration for a bundle: it
// presents the bundle's certificate and accepts the server only if its
// public key matches the bundle's pin (addresses are not checked, so the
// sensor may be reached through NAT or a port forward).
func ClientConfig(b *Bundle) (*tls.Config, error) {
	cert, err := b.Certificate()
	if err != nil {
		return nil, err
	}
	pin := b.Pin
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("sensor presented no certificate")
			}
			if got := Pin(cs.PeerCertificates[0]); got != pin {
				return fmt.Errorf("sensor certificate pin %s does not match the bundle's %s: this is not your sensor", got, pin)
			}
			return nil
		},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}, nil
}

// AdminClientConfig returns the client configuration for an administrator
// bundle; it refuses an endpoint bundle.
func AdminClientConfig(b *Bundle) (*tls.Config, error) {
	if !b.Admin {
		return nil, fmt.Errorf("bundle %s is an endpoint bundle: enroll an administrator with `tapbeat enroll --admin --name NAME`", b.Name)
	}
	return ClientConfig(b)
}
