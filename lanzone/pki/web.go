package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"
)

// WebValidity is how long a console certificate issued at start is valid.
const WebValidity = 397 * 24 * time.Hour

// IssueWebServer issues a TLS server certificate from the organisation's CA
// for the console at hosts (IP addresses or DNS names), with a fresh key
// kept in memory: browsers that trust the organisation's CA accept it.
func (a *Authority) IssueWebServer(hosts []string, now time.Time) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("console certificate: no address to issue it for")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{a.Org()}, OrganizationalUnit: []string{"tapbeat-console"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(WebValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, &key.PublicKey, a.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("console certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, a.caCert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// ConsoleTLS returns the console's TLS configuration for cert: TLS 1.2 or
// newer (browsers), client certificates asked for but optional, and a
// verifier that admits active administrator certificates of dir's
// authority (the trust store is re-read at most once a second). A client
// certificate that fails verification fails the handshake.
func ConsoleTLS(dir string, cert tls.Certificate) (*tls.Config, func(tls.ConnectionState) (Entry, error), error) {
	a, err := Open(dir)
	if err != nil {
		return nil, nil, err
	}
	ts, err := OpenTrustStore(dir)
	if err != nil {
		return nil, nil, err
	}
	v := NewVerifier(a.CACertificate(), ts, true)
	v.refreshEvery = time.Second
	v.lastRefresh = time.Now()
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := v.Verify(cs)
			return err
		},
	}
	return cfg, v.Verify, nil
}
