package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// OUFleet marks a sensor's fleet certificate: the one its fleet node
// presents on cluster routes, accepted only by nodes of the same
// organisation's CA.
const OUFleet = "tapbeat-fleet"

// FleetValidity is how long a fleet certificate is valid.
const FleetValidity = ServerValidity

// SensorIdentity is what a new fleet sensor receives from an existing one:
// the organisation's CA (certificate and key, so every sensor can enroll),
// the LAN-zone key the fleet shares (agents pin it, so they accept every
// sensor of the fleet) with a certificate for the new sensor's LAN-zone
// addresses, and the new sensor's own fleet key and certificate.
type SensorIdentity struct {
	CACert, CAKey         []byte
	ServerKey, ServerCert []byte
	FleetKey, FleetCert   []byte
}

// IssueSensor issues the identity of fleet sensor name, whose LAN-zone
// addresses are lan and whose fleet address host is fleetHost (an IP
// address or a DNS name, written into the fleet certificate's SANs).
func (a *Authority) IssueSensor(name string, lan []netip.Addr, fleetHost string) (*SensorIdentity, error) {
	if err := CheckHostName(name); err != nil {
		return nil, fmt.Errorf("fleet sensor name: %w", err)
	}
	if len(lan) == 0 {
		return nil, errors.New("issue fleet sensor: no LAN-zone address given")
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(a.dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("issue fleet sensor: %w", err)
	}
	srvKeyPEM, err := os.ReadFile(filepath.Join(a.dir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("issue fleet sensor: %w", err)
	}
	srvKey, err := parseKeyPEM(srvKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("issue fleet sensor: %s: %w", ServerKeyFile, err)
	}
	sder, err := a.serverCertificate(srvKey, lan)
	if err != nil {
		return nil, fmt.Errorf("issue fleet sensor %s: LAN-zone certificate: %w", name, err)
	}
	fleetKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue fleet sensor: generate key: %w", err)
	}
	fder, err := a.fleetCert(name, fleetHost, &fleetKey.PublicKey, time.Now())
	if err != nil {
		return nil, err
	}
	fkPEM, err := pemKey(fleetKey)
	if err != nil {
		return nil, err
	}
	return &SensorIdentity{
		CACert: a.caPEM, CAKey: caKeyPEM,
		ServerKey: srvKeyPEM, ServerCert: pemCert(sder),
		FleetKey: fkPEM, FleetCert: pemCert(fder),
	}, nil
}

// IssueFleetCert issues this sensor's own fleet key and certificate (for
// the first sensor of a fleet, whose directory already holds the rest).
func (a *Authority) IssueFleetCert(name, fleetHost string) (keyPEM, certPEM []byte, err error) {
	if err := CheckHostName(name); err != nil {
		return nil, nil, fmt.Errorf("fleet sensor name: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue fleet certificate: generate key: %w", err)
	}
	der, err := a.fleetCert(name, fleetHost, &k.PublicKey, time.Now())
	if err != nil {
		return nil, nil, err
	}
	kp, err := pemKey(k)
	if err != nil {
		return nil, nil, err
	}
	return kp, pemCert(der), nil
}

func (a *Authority) fleetCert(name, host string, pub *ecdsa.PublicKey, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{a.Org()}, OrganizationalUnit: []string{OUFleet}, CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(FleetValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{net.IP(ip.AsSlice())}
	} else if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, pub, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue fleet certificate for %s: %w", name, err)
	}
	return der, nil
}

// JournalLines returns the trust store journal's complete lines from byte
// offset on, and the offset after the last complete line. It reads only
// what follows offset (the journal is read again every second), from the
// start if the journal is shorter than offset (replaced).
func JournalLines(dir string, offset int64) ([][]byte, int64, error) {
	f, err := os.Open(filepath.Join(dir, TrustFile))
	if err != nil {
		return nil, offset, fmt.Errorf("read trust store: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, offset, fmt.Errorf("read trust store: %w", err)
	}
	if st.Size() < offset {
		offset = 0
	}
	if st.Size() == offset {
		return nil, offset, nil
	}
	rest, err := io.ReadAll(io.NewSectionReader(f, offset, st.Size()-offset))
	if err != nil {
		return nil, offset, fmt.Errorf("read trust store: %w", err)
	}
	var out [][]byte
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		out = append(out, rest[:i:i])
		rest = rest[i+1:]
		offset += int64(i + 1)
	}
	return out, offset, nil
}

// AppendJournal appends trust store journal lines received from another
// sensor of the fleet. Each line must be a well-formed record ("add" or
// "revoke" with a fingerprint); a malformed one refuses the whole call, so
// nothing damaged reaches the journal.
func AppendJournal(dir string, lines [][]byte) error {
	recs := make([]record, 0, len(lines))
	for _, l := range lines {
		var rec record
		if err := json.Unmarshal(l, &rec); err != nil {
			return fmt.Errorf("trust record from the fleet: %w", err)
		}
		if rec.Op != "add" && rec.Op != "revoke" {
			return fmt.Errorf("trust record from the fleet: unknown operation %q", rec.Op)
		}
		if _, err := ParseFingerprint(rec.FP); err != nil {
			return fmt.Errorf("trust record from the fleet: %w", err)
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return nil
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return appendRecords(dir, recs)
}

// WriteIdentity writes a joined sensor's identity into dir (created, mode
// 0700) and an empty trust store. It refuses a directory that already
// holds a sensor.
func WriteIdentity(dir string, id *SensorIdentity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("join: create %s: %w", dir, err)
	}
	for _, f := range []string{CAKeyFile, CACertFile, TrustFile, ServerKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("join %s: %w (found %s); use another --dir", dir, ErrExists, f)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAKeyFile, id.CAKey, 0o600}, {CACertFile, id.CACert, 0o644},
		{ServerKeyFile, id.ServerKey, 0o600}, {ServerCertFile, id.ServerCert, 0o644},
		{TrustFile, nil, 0o600},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// ParseCertificatePEM parses one PEM certificate.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) { return parseCertPEM(b) }
