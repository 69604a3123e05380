package fleet

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// JoinFormat identifies a fleet join file.
const JoinFormat = "tapbeat-fleet-1"

// File names of the fleet identity inside the sensor directory.
const (
	KeyFile   = "fleet.key"
	CertFile  = "fleet.crt"
	TokenFile = "fleet.token"
	StoreDir  = "fleet-js"
)

// JoinFile is what a new sensor needs to join the fleet, written mode 0600
// by `tapbeat fleet add`: the organisation's CA, the fleet's LAN-zone key
// with a certificate for the new sensor's addresses, its own fleet key and
// certificate, and the fleet addresses of the sensors already there.
type JoinFile struct {
	Format     string        `json:"format"`
	Org        string        `json:"org"`
	Name       string        `json:"name"`
	FleetAddr  string        `json:"fleet_addr"`
	Peers      []string      `json:"peers"`
	LAN        []string      `json:"lan"`
	LANPort    int           `json:"lan_port"`
	Interval   time.Duration `json:"heartbeat_interval"`
	CACert     string        `json:"ca_pem"`
	CAKey      string        `json:"ca_key_pem"`
	ServerKey  string        `json:"lan_key_pem"`
	ServerCert string        `json:"lan_cert_pem"`
	FleetKey   string        `json:"fleet_key_pem"`
	FleetCert  string        `json:"fleet_cert_pem"`
}

// AddSensor issues a join file for sensor name from the fleet sensor in
// dir, and adds the new sensor's address to dir's peers. dir must already
// have a fleet address (`tapbeat config set fleet-addr`).
func AddSensor(dir, name string, lan []netip.Addr, fleetAddr string) (*JoinFile, error) {
	cfg, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !cfg.Enabled() || cfg.Addr == "" {
		return nil, fmt.Errorf("fleet add: %s has no fleet address: set it first with `tapbeat config set --dir %s fleet-addr HOST:%d`", dir, dir, DefaultPort)
	}
	addr, err := NormalizeAddr(fleetAddr)
	if err != nil {
		return nil, fmt.Errorf("fleet add: --fleet-addr: %w", err)
	}
	if name == cfg.Name {
		return nil, fmt.Errorf("fleet add: %s is this sensor's own name: choose another --name", name)
	}
	if addr == cfg.Addr || slices.Contains(cfg.Peers, addr) {
		return nil, fmt.Errorf("fleet add: %s is already a fleet address (this sensor or a peer): give the new sensor its own", addr)
	}
	z, err := lzconfig.Load(dir)
	if err != nil {
		return nil, err
	}
	a, err := pki.Open(dir)
	if err != nil {
		return nil, err
	}
	host, _, _ := SplitAddr(addr)
	id, err := a.IssueSensor(name, lan, host)
	if err != nil {
		return nil, err
	}
	jf := &JoinFile{
		Format: JoinFormat, Org: a.Org(), Name: name, FleetAddr: addr,
		Peers:   append([]string{cfg.Addr}, cfg.Peers...),
		LANPort: z.Port, Interval: z.HeartbeatInterval,
		CACert: string(id.CACert), CAKey: string(id.CAKey),
		ServerKey: string(id.ServerKey), ServerCert: string(id.ServerCert),
		FleetKey: string(id.FleetKey), FleetCert: string(id.FleetCert),
	}
	for _, ip := range lan {
		jf.LAN = append(jf.LAN, ip.String())
	}
	cfg.Peers = append(cfg.Peers, addr)
	if err := Save(dir, cfg); err != nil {
		return nil, err
	}
	return jf, nil
}

// SetAddr gives the sensor in dir its own fleet address and name, issuing
// its fleet certificate if it has none: the first sensor of a fleet.
func SetAddr(dir, name, fleetAddr string) (Config, error) {
	addr, err := NormalizeAddr(fleetAddr)
	if err != nil {
		return Config{}, fmt.Errorf("fleet-addr: %w", err)
	}
	cfg, err := Load(dir)
	if err != nil {
		return Config{}, err
	}
	if name == "" {
		name = cfg.Name
	}
	if name == "" {
		if h, err := os.Hostname(); err == nil && pki.CheckHostName(h) == nil {
			name = h
		} else {
			name = "sensor-1"
		}
	}
	cfg.Name, cfg.Addr = name, addr
	host, _, _ := SplitAddr(addr)
	a, err := pki.Open(dir)
	if err != nil {
		return Config{}, err
	}
	k, c, err := a.IssueFleetCert(name, host)
	if err != nil {
		return Config{}, err
	}
	if err := lzconfig.WriteFileAtomic(filepath.Join(dir, KeyFile), k, 0o600); err != nil {
		return Config{}, err
	}
	if err := lzconfig.WriteFileAtomic(filepath.Join(dir, CertFile), c, 0o644); err != nil {
		return Config{}, err
	}
	if err := Save(dir, cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// WriteFile writes the join file mode 0600, refusing to overwrite.
func (j *JoinFile) WriteFile(path string) error {
	raw, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode fleet join file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("write %s: it already exists: choose another --out or remove it", path)
		}
		return fmt.Errorf("write fleet join file: %w", err)
	}
	if _, err := f.Write(append(raw, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// ReadJoinFile reads and checks a join file: format, a CA that signed the
// LAN-zone and fleet certificates, an organisation that matches the CA's.
func ReadJoinFile(path string) (*JoinFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read fleet join file: %w", err)
	}
	var j JoinFile
	if err := json.Unmarshal(raw, &j); err != nil || j.Format != JoinFormat {
		return nil, fmt.Errorf("read %s: not a tapbeat fleet join file (format %q): use the file `tapbeat fleet add` wrote", path, j.Format)
	}
	ca, err := pki.ParseCertificatePEM([]byte(j.CACert))
	if err != nil {
		return nil, fmt.Errorf("read %s: CA certificate: %w", path, err)
	}
	if len(ca.Subject.Organization) == 0 || ca.Subject.Organization[0] != j.Org {
		return nil, fmt.Errorf("read %s: the CA belongs to %q, the file claims %q: the file is damaged or forged", path, ca.Subject.Organization, j.Org)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for what, p := range map[string]string{"LAN-zone": j.ServerCert, "fleet": j.FleetCert} {
		c, err := pki.ParseCertificatePEM([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("read %s: %s certificate: %w", path, what, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("read %s: %s certificate not signed by the file's CA: %w", path, what, err)
		}
	}
	return &j, nil
}

// Join prepares dir as a new fleet sensor from a join file: CA, LAN-zone
// key and certificate, fleet identity, an empty trust store (the fleet's
// journal fills it at the first start) and the configuration.
func Join(dir string, j *JoinFile) error {
	if err := pki.WriteIdentity(dir, &pki.SensorIdentity{
		CACert: []byte(j.CACert), CAKey: []byte(j.CAKey),
		ServerKey: []byte(j.ServerKey), ServerCert: []byte(j.ServerCert),
	}); err != nil {
		return err
	}
	if err := lzconfig.WriteFileAtomic(filepath.Join(dir, KeyFile), []byte(j.FleetKey), 0o600); err != nil {
		return err
	}
	if err := lzconfig.WriteFileAtomic(filepath.Join(dir, CertFile), []byte(j.FleetCert), 0o644); err != nil {
		return err
	}
	if err := lzconfig.Save(dir, lzconfig.LANZone{Addresses: j.LAN, Port: j.LANPort, HeartbeatInterval: j.Interval}); err != nil {
		return err
	}
	return Save(dir, Config{Name: j.Name, Addr: j.FleetAddr, Peers: j.Peers})
}
