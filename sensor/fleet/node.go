package fleet

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// node is the sensor's embedded NATS server.
type node struct {
	srv      *server.Server
	token    string
	url      string
	storeDir string // JetStream's, as in the server's options
}

// The fleet carries small records; keep the node's reservations small.
const (
	jsMaxMemory = 64 << 20
	jsMaxStore  = 4 << 30
)

// ClusterTLS returns the mutual-TLS configuration of cluster routes: this
// sensor's fleet certificate, and only peers whose certificate the
// organisation's CA signed for a fleet sensor (OU tapbeat-fleet).
func ClusterTLS(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("fleet certificate: %w: run `tapbeat config set --dir %s fleet-addr HOST:PORT` or join with a fleet file", err, dir)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	ca, err := pki.ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", pki.CACertFile, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	check := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("fleet peer sent no certificate")
		}
		c := cs.PeerCertificates[0]
		if !slices.Contains(c.Subject.OrganizationalUnit, pki.OUFleet) {
			return fmt.Errorf("fleet peer %q: certificate is not a fleet certificate (OU %v): issue one with `tapbeat fleet add`", c.Subject.CommonName, c.Subject.OrganizationalUnit)
		}
		return nil
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		ClientCAs:        pool,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		VerifyConnection: check,
	}, nil
}

// startNode starts the embedded node: cluster routes on cfg.Addr over
// mutual TLS, client port on loopback with a fresh token, JetStream on
// disk under dir.
func startNode(dir string, cfg Config, log *slog.Logger) (*node, error) {
	host, port, err := SplitAddr(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("fleet.addr: %w", err)
	}
	tlsc, err := ClusterTLS(dir)
	if err != nil {
		return nil, err
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("fleet token: %w", err)
	}
	token := hex.EncodeToString(tok[:])
	if err := lzconfig.WriteFileAtomic(filepath.Join(dir, TokenFile), []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range cfg.Peers {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: p})
	}

	org := ""
	if c, err := pki.ParseCertificatePEM(mustRead(filepath.Join(dir, pki.CACertFile))); err == nil && len(c.Subject.Organization) > 0 {
		org = c.Subject.Organization[0]
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               "127.0.0.1",
		Port:               cfg.ClientPort,
		Authorization:      token,
		NoSigs:             true,
		NoLog:              log == nil,
		JetStream:          true,
		StoreDir:           filepath.Join(dir, StoreDir),
		JetStreamMaxMemory: jsMaxMemory,
		JetStreamMaxStore:  jsMaxStore,
		Cluster: server.ClusterOpts{
			Name:           clusterName(org),
			Host:           listenHost(host),
			Port:           port,
			Advertise:      cfg.Addr,
			TLSConfig:      tlsc,
			TLSTimeout:     3,
			ConnectRetries: 0,
			// A route cut off without a reset (a partition) is noticed in
			// about 2 s and dialled afresh, instead of waiting for TCP's
			// retransmission backoff once the link is back; 2 s is also
			// well before a node cut off alone would campaign (hold.go).
			PingInterval: 500 * time.Millisecond,
			MaxPingsOut:  3,
		},
		Routes: routes,
	}
	if len(routes) == 0 {
		// The first sensor, alone until `fleet add` gives it a peer: a
		// clustered JetStream of one never elects a leader, so it runs a
		// standalone node (its own store: clustered state starts clean at
		// the restart that brings the first peer) and opens no fleet port.
		opts.Cluster = server.ClusterOpts{}
		opts.StoreDir = filepath.Join(dir, StoreDir+"-solo")
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("fleet node: %w", err)
	}
	if log != nil {
		srv.SetLoggerV2(slogAdapter{log.With("part", "nats")}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("fleet node: not ready after 10 s (is %s or 127.0.0.1:%d taken?)", cfg.Addr, cfg.ClientPort)
	}
	return &node{srv: srv, token: token, url: srv.ClientURL(), storeDir: opts.StoreDir}, nil
}

// routedNames returns the names of the nodes the node has routes to, each
// once (a peer has several pooled routes).
func (n *node) routedNames() ([]string, error) {
	rz, err := n.srv.Routez(nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	return names, nil
}

// clusterName derives the NATS cluster name from the organisation, so two
// organisations' nodes never merge even if routes reach each other.
func clusterName(org string) string {
	b := []byte("tapbeat-")
	for _, r := range org {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b = append(b, byte(r))
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

// listenHost binds the routes on the fleet address itself, or on every
// address when the address is a DNS name.
func listenHost(h string) string {
	if h == "" {
		return "0.0.0.0"
	}
	return h
}

func mustRead(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}

// slogAdapter passes the NATS server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  {}
func (a slogAdapter) Tracef(f string, v ...any)  {}
