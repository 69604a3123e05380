package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
)

func newAuthority(t *testing.T) *Authority {
	t.Helper()
	dir := t.TempDir()
	a, err := Init(dir, "Example Org", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Save(dir, config.LANZone{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInitLayoutAndRefusal(t *testing.T) {
	a := newAuthority(t)
	for _, f := range []string{CAKeyFile, ServerKeyFile, TrustFile} {
		st, err := os.Stat(filepath.Join(a.Dir(), f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	_, err := Init(a.Dir(), "Other", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "remove the directory") {
		t.Fatalf("second init: %v, want ErrExists with advice", err)
	}
	if _, err := Open(a.Dir()); err != nil {
		t.Fatal(err)
	}
	if a.Org() != "Example Org" {
		t.Fatalf("org %q", a.Org())
	}
}

func TestEnrollBundleAndRevoke(t *testing.T) {
	a := newAuthority(t)
	b, err := a.Enroll("host-1.example", EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.json")
	if err := b.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("bundle mode %v", st.Mode().Perm())
	}
	if err := b.WriteFile(out); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	rb, err := ReadBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := rb.Certificate()
	leaf := cert.Leaf
	if leaf.Subject.CommonName != b.ID || leaf.Subject.Organization[0] != "Example Org" || leaf.DNSNames[0] != "host-1.example" {
		t.Fatalf("subject %v SAN %v", leaf.Subject, leaf.DNSNames)
	}
	if len(rb.Addresses) != 1 || rb.Addresses[0] != "127.0.0.1:8347" || !strings.HasPrefix(rb.Pin, "sha256/") {
		t.Fatalf("bundle addresses %v pin %q", rb.Addresses, rb.Pin)
	}
	if _, err := a.Enroll("host-1.example", EnrollOptions{}); err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("second enroll: %v", err)
	}
	// An administrator of the same name is a different certificate kind.
	if _, err := a.Enroll("host-1.example", EnrollOptions{Admin: true}); err != nil {
		t.Fatal(err)
	}
	ts, err := OpenTrustStore(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	e, ok := ts.Lookup(FingerprintOf(leaf.Raw))
	if !ok || !e.Active() || e.ID != b.ID {
		t.Fatalf("lookup: %+v %v", e, ok)
	}
	rev, err := a.Revoke("host-1.example", false)
	if err != nil || len(rev) != 1 || rev[0].ID != b.ID {
		t.Fatalf("revoke: %v %v", rev, err)
	}
	got, err := ts.Refresh()
	if err != nil || len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("refresh after revoke: %v %v", got, err)
	}
	if e, _ := ts.Lookup(FingerprintOf(leaf.Raw)); e.Active() {
		t.Fatal("still active after revoke")
	}
	if _, err := a.Revoke("host-1.example", false); err == nil || !strings.Contains(err.Error(), "no enrolled endpoint") {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := a.Enroll("bad name!", EnrollOptions{}); err == nil {
		t.Fatal("bad host name accepted")
	}
}

func TestTrustStoreDamagedLine(t *testing.T) {
	a := newAuthority(t)
	if _, err := a.Enroll("h1", EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	ts, err := OpenTrustStore(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(a.Dir(), TrustFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{garbage\n")
	f.Close()
	if _, err := ts.Refresh(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("damaged journal: %v", err)
	}
	if ts.Len() != 1 {
		t.Fatalf("lost the accepted entry: %d", ts.Len())
	}
}

// handshake runs a TLS handshake over loopback between the authority's LAN
// (or admin) server and a client with cfg, and returns the server's error.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) (serverErr, clientErr error, resumed bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// Let the client read the session ticket.
			_, err = tc.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		_, err = c.Read(b[:])
		resumed = c.ConnectionState().DidResume
		c.Close()
	}
	return <-done, err, resumed
}

func TestServerVerification(t *testing.T) {
	a := newAuthority(t)
	ts, err := OpenTrustStore(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := LoadServerCert(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	lan := ServerConfig(sc, NewVerifier(a.CACertificate(), ts, false))
	good, _ := a.Enroll("good", EnrollOptions{})
	adm, _ := a.Enroll("admin1", EnrollOptions{Admin: true})
	expired, _ := a.Enroll("old", EnrollOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	stray, _, err := a.issueClient("stray", false, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), lanDetails{pin: good.Pin})
	if err != nil {
		t.Fatal(err)
	}
	other := newAuthority(t)
	foreign, _ := other.Enroll("foreign", EnrollOptions{})
	foreign.Pin = good.Pin
	if _, err := ts.Refresh(); err != nil {
		t.Fatal(err)
	}
	cfg := func(b *Bundle) *tls.Config {
		c, err := ClientConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	noCert := cfg(good)
	noCert.Certificates = nil
	cases := []struct {
		name   string
		cli    *tls.Config
		reason string
	}{
		{"enrolled", cfg(good), ""},
		{"no certificate", noCert, ReasonNoCertificate},
		{"not enrolled", cfg(stray), ReasonNotEnrolled},
		{"expired", cfg(expired), ReasonExpired},
		{"other CA", cfg(foreign), ReasonUnknownCA},
		{"admin on LAN", cfg(adm), ReasonAdminOnLAN},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr, _ := handshake(t, lan, tc.cli)
			if tc.reason == "" {
				if serr != nil || cerr != nil {
					t.Fatalf("server %v client %v", serr, cerr)
				}
				return
			}
			var re *RefusedError
			if !errors.As(serr, &re) || re.Reason != tc.reason {
				t.Fatalf("server error %v, want reason %q", serr, tc.reason)
			}
			if cerr == nil {
				t.Fatal("client saw no error")
			}
		})
	}

	// Resumption works, and a revoked certificate cannot resume.
	cli := cfg(good)
	if serr, cerr, _ := handshake(t, lan, cli); serr != nil || cerr != nil {
		t.Fatalf("first handshake: %v %v", serr, cerr)
	}
	serr, cerr, resumed := handshake(t, lan, cli)
	if serr != nil || cerr != nil || !resumed {
		t.Fatalf("resumption: server %v client %v resumed %v", serr, cerr, resumed)
	}
	if _, err := a.Revoke("good", false); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Refresh(); err != nil {
		t.Fatal(err)
	}
	serr, _, _ = handshake(t, lan, cli)
	var re *RefusedError
	if !errors.As(serr, &re) || re.Reason != ReasonRevoked {
		t.Fatalf("revoked resumption: %v", serr)
	}

	// The admin server accepts administrators only.
	adminSrv, err := AdminServerConfig(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	acli, err := AdminClientConfig(adm)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr, _ := handshake(t, adminSrv, acli); serr != nil || cerr != nil {
		t.Fatalf("admin: %v %v", serr, cerr)
	}
	if _, err := AdminClientConfig(good); err == nil {
		t.Fatal("endpoint bundle accepted as admin client")
	}
	ep2, _ := a.Enroll("ep2", EnrollOptions{})
	time.Sleep(1100 * time.Millisecond) // the admin verifier re-reads the store each second
	serr, _, _ = handshake(t, adminSrv, cfg(ep2))
	if !errors.As(serr, &re) || re.Reason != ReasonEndpointAdmin {
		t.Fatalf("endpoint on admin API: %v", serr)
	}
}

func TestWrongPinRefused(t *testing.T) {
	a := newAuthority(t)
	b, _ := a.Enroll("h", EnrollOptions{})
	ts, _ := OpenTrustStore(a.Dir())
	sc, _ := LoadServerCert(a.Dir())
	srv := ServerConfig(sc, NewVerifier(a.CACertificate(), ts, false))
	b.Pin = "sha256/AAAA"
	cli, _ := ClientConfig(b)
	_, cerr, _ := handshake(t, srv, cli)
	if cerr == nil || !strings.Contains(cerr.Error(), "not your sensor") {
		t.Fatalf("client error %v", cerr)
	}
}

func TestReissueKeepsPin(t *testing.T) {
	a := newAuthority(t)
	p1, _ := ServerPin(a.Dir())
	if err := a.ReissueServer([]netip.Addr{netip.MustParseAddr("10.1.2.3")}); err != nil {
		t.Fatal(err)
	}
	p2, _ := ServerPin(a.Dir())
	if p1 != p2 {
		t.Fatal("pin changed on reissue")
	}
}

func TestSessionTicketKeysPersistAndRotate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	k1, err := SessionTicketKeys(dir, now)
	if err != nil || len(k1) != 1 {
		t.Fatalf("%v %v", k1, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, TicketKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	k2, _ := SessionTicketKeys(dir, now.Add(time.Hour))
	if len(k2) != 1 || k2[0] != k1[0] {
		t.Fatal("key not kept across a restart")
	}
	k3, _ := SessionTicketKeys(dir, now.Add(25*time.Hour))
	if len(k3) != 2 || k3[1] != k1[0] || k3[0] == k1[0] {
		t.Fatal("key not rotated after a day")
	}
	k4, _ := SessionTicketKeys(dir, now.Add(100*time.Hour))
	if len(k4) != 1 || k4[0] == k3[0] {
		t.Fatal("expired keys kept")
	}
}

func TestInitTightensExistingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "Example Org", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("existing directory left mode %v, want 0700", st.Mode().Perm())
	}
}

func TestEnrollNamesCaseInsensitive(t *testing.T) {
	a := newAuthority(t)
	if _, err := a.Enroll("ws-1.example", EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Enroll("WS-1.Example", EnrollOptions{})
	if err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("second enrollment differing in case: %v, want already enrolled", err)
	}
	if _, err := a.EnrollMany([]string{"pc-2", "PC-2"}, EnrollOptions{}); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("one batch with two cases: %v", err)
	}
}
