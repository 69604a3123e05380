// Package pki owns the organisation's enrollment authority and the sensor's
// trust store: the CA (ECDSA P-256), the sensor's LAN-zone server
// certificate, endpoint and admin client certificates, the bundles agents
// and administrators install, and the TLS configurations that accept only
// certificates the trust store holds.
//
// Layout of the sensor directory (keys are mode 0600):
//
//	ca.key, ca.crt          the organisation's CA
//	server.key, server.crt  the sensor's LAN-zone certificate (SANs = LAN addresses)
//	trust.log               append-only journal of enrolled and revoked certificates
//	session-tickets.json    TLS session-ticket keys, so sessions resume across restarts
//	.lock                   serialises writers (init, enroll, revoke)
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
)

// File names inside the sensor directory.
const (
	CAKeyFile      = "ca.key"
	CACertFile     = "ca.crt"
	ServerKeyFile  = "server.key"
	ServerCertFile = "server.crt"
	TrustFile      = "trust.log"
	lockFile       = ".lock"
)

// Organisational units that mark what a client certificate is for.
const (
	OUEndpoint = "tapbeat-endpoint"
	OUAdmin    = "tapbeat-admin"
)

// ServerDNSName is the DNS SAN every sensor certificate carries besides its
// LAN-zone addresses.
const ServerDNSName = "tapbeat-sensor"

// Validity periods.
const (
	CAValidity     = 20 * 365 * 24 * time.Hour
	ServerValidity = 10 * 365 * 24 * time.Hour
	ClientValidity = 5 * 365 * 24 * time.Hour
)

// ErrExists is returned by Init for a directory that already holds a sensor.
var ErrExists = errors.New("sensor directory already initialised")

// Authority is the organisation's enrollment authority, backed by a sensor
// directory. It is safe for use by one process at a time per call; writers in
// different processes are serialised by a file lock.
type Authority struct {
	dir    string
	caCert *x509.Certificate
	caPEM  []byte
	caKey  *ecdsa.PrivateKey
}

// Init creates the CA and the server certificate for lan in dir (created if
// needed, mode 0700) and an empty trust store. It refuses a directory that
// already holds a CA or a trust store.
func Init(dir, org string, lan []netip.Addr) (*Authority, error) {
	if err := checkText("organisation", org); err != nil {
		return nil, err
	}
	if len(lan) == 0 {
		return nil, errors.New("init: no LAN-zone address given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: create %s: %w", dir, err)
	}
	// An existing directory (made by hand, or by a package) may be open to
	// others: the CA key and the history live here.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: make %s private (mode 0700): %w", dir, err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, f := range []string{CAKeyFile, CACertFile, TrustFile, ServerKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("init %s: %w (found %s); use another --dir, or remove the directory to start over (every enrolled endpoint would need a new bundle)", dir, ErrExists, f)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " tapbeat CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("init: create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("init: parse CA certificate: %w", err)
	}
	a := &Authority{dir: dir, caCert: caCert, caKey: caKey, caPEM: pemCert(der)}
	if err := writeKey(filepath.Join(dir, CAKeyFile), caKey); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), a.caPEM, 0o644); err != nil {
		return nil, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init: generate server key: %w", err)
	}
	if err := writeKey(filepath.Join(dir, ServerKeyFile), srvKey); err != nil {
		return nil, err
	}
	if err := a.issueServer(srvKey, lan); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, TrustFile), nil, 0o600); err != nil {
		return nil, err
	}
	return a, nil
}

// Open loads the authority from dir.
func Open(dir string) (*Authority, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open authority: %s holds no CA: run `tapbeat init --dir %s --org NAME --lan ADDR` first", dir, dir)
		}
		return nil, fmt.Errorf("open authority: %w", err)
	}
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("open authority: %s: %w", CACertFile, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open authority: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("open authority: %s: %w", CAKeyFile, err)
	}
	return &Authority{dir: dir, caCert: caCert, caKey: key, caPEM: caPEM}, nil
}

// Dir returns the sensor directory.
func (a *Authority) Dir() string { return a.dir }

// Org returns the organisation's name (the CA's O).
func (a *Authority) Org() string {
	if len(a.caCert.Subject.Organization) > 0 {
		return a.caCert.Subject.Organization[0]
	}
	return ""
}

// CACertificate returns the CA certificate.
func (a *Authority) CACertificate() *x509.Certificate { return a.caCert }

// ReissueServer issues a new server certificate for lan with the existing
// server key, so the pin agents hold stays valid.
func (a *Authority) ReissueServer(lan []netip.Addr) error {
	unlock, err := lock(a.dir)
	if err != nil {
		return err
	}
	defer unlock()
	keyPEM, err := os.ReadFile(filepath.Join(a.dir, ServerKeyFile))
	if err != nil {
		return fmt.Errorf("reissue server certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("reissue server certificate: %s: %w", ServerKeyFile, err)
	}
	return a.issueServer(key, lan)
}

func (a *Authority) issueServer(key *ecdsa.PrivateKey, lan []netip.Addr) error {
	der, err := a.serverCertificate(key, lan)
	if err != nil {
		return fmt.Errorf("create server certificate: %w", err)
	}
	return writeFile(filepath.Join(a.dir, ServerCertFile), pemCert(der), 0o644)
}

// serverCertificate signs a LAN-zone server certificate for key, valid for
// the sensor's DNS name and the addresses lan, and returns it DER-encoded.
func (a *Authority) serverCertificate(key *ecdsa.PrivateKey, lan []netip.Addr) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{a.Org()}, CommonName: ServerDNSName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{ServerDNSName},
	}
	for _, ip := range lan {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.caCert, &key.PublicKey, a.caKey)
}

// ServerPin returns the pin of the sensor's certificate: the SHA-256 of its
// public key (SubjectPublicKeyInfo), written "sha256/" + base64. It survives
// re-issuing the certificate for new addresses.
func ServerPin(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, ServerCertFile))
	if err != nil {
		return "", fmt.Errorf("read server certificate: %w", err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ServerCertFile, err)
	}
	return Pin(c), nil
}

// Pin returns the "sha256/BASE64" pin of a certificate's public key.
func Pin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// Fingerprint is the SHA-256 of a certificate's DER encoding: the trust
// store's key.
type Fingerprint [32]byte

// FingerprintOf returns the fingerprint of a DER certificate.
func FingerprintOf(der []byte) Fingerprint { return sha256.Sum256(der) }

// String returns the fingerprint in lower-case hex.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// ParseFingerprint parses the hex form.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("fingerprint %q: want 64 hex digits", s)
	}
	copy(f[:], b)
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func newID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return prefix + hex.EncodeToString(b[:])
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	b, err := pemKey(k)
	if err != nil {
		return err
	}
	return writeFile(path, b, 0o600)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(blk.Bytes); err2 == nil {
			return ek, nil
		}
		return nil, fmt.Errorf("parse key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA", k)
	}
	return ek, nil
}

// writeFile writes a file atomically with the given mode.
func writeFile(path string, data []byte, perm os.FileMode) error {
	return config.WriteFileAtomic(path, data, perm)
}

// checkText refuses empty, overlong or control-character text.
func checkText(what, s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 128 {
		return fmt.Errorf("%s %q is longer than 128 bytes", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q contains a control character", what, s)
		}
	}
	return nil
}

// CheckHostName validates an endpoint's host name, which becomes its
// certificate's DNS SAN.
func CheckHostName(name string) error {
	if name == "" {
		return errors.New("host name is empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("host name %q is longer than 253 bytes", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host name %q: each dot-separated label must be 1-63 characters", name)
		}
		for i, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(label)-1 || r == '_'
			if !ok {
				return fmt.Errorf("host name %q: only letters, digits and inner hyphens are allowed (found %q)", name, r)
			}
		}
	}
	return nil
}
