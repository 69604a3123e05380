package pki

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/tapbeat/tapbeat/lanzone/config"
)

// BundleFormat identifies the bundle file format.
const BundleFormat = "tapbeat-bundle-1"

// Bundle is everything an agent (or an administrator's client) needs to talk
// to the sensor, in one JSON file written mode 0600: its key and
// certificate, the CA certificate, the sensor's LAN-zone addresses and the
// pin of the sensor's certificate.
type Bundle struct {
	Format string `json:"format"`
	ID     string `json:"endpoint_id"` // certificate CN
	Name   string `json:"name"`        // DNS SAN
	Org    string `json:"org"`
	Admin  bool   `json:"admin,omitempty"`
	Key    string `json:"key_pem"`
	Cert   string `json:"cert_pem"`
	CA     string `json:"ca_pem"`
	// Addresses are the sensor's LAN-zone addresses as host:port, tried in order.
	Addresses []string `json:"addresses"`
	// Pin is the sensor certificate's public-key pin, "sha256/BASE64".
	Pin string `json:"sensor_pin"`
}

// ReadBundle reads and checks a bundle file.
func ReadBundle(path string) (*Bundle, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	var b Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("read bundle %s: not a tapbeat bundle (%v): use the file `tapbeat enroll` wrote", path, err)
	}
	if b.Format != BundleFormat {
		return nil, fmt.Errorf("read bundle %s: format %q, want %q: re-enroll with this version of tapbeat", path, b.Format, BundleFormat)
	}
	if _, err := b.Certificate(); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", path, err)
	}
	if b.Pin == "" {
		return nil, fmt.Errorf("read bundle %s: no sensor pin", path)
	}
	return &b, nil
}

// WriteFile writes the bundle to path, mode 0600. It refuses to overwrite
// an existing file.
func (b *Bundle) WriteFile(path string) error {
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("write bundle: %s already exists: choose another --out or remove it", path)
		}
		return fmt.Errorf("write bundle: %w", err)
	}
	if _, err := f.Write(append(raw, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	return nil
}

// Certificate returns the bundle's key pair.
func (b *Bundle) Certificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair([]byte(b.Cert), []byte(b.Key))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("bundle key pair: %w", err)
	}
	return c, nil
}

type lanDetails struct {
	addrs []string
	pin   string
}

// lanInfo returns what a bundle says about the LAN zone: addrs, or when
// nil the addresses of dir's configuration file, and the server pin.
func lanInfo(dir string, addrs []string) (lanDetails, error) {
	if addrs == nil {
		z, err := config.Load(dir)
		if err != nil {
			return lanDetails{}, err
		}
		addrs = z.AddrPorts()
	}
	pin, err := ServerPin(dir)
	if err != nil {
		return lanDetails{}, err
	}
	return lanDetails{addrs: addrs, pin: pin}, nil
}
