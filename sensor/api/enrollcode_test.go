package api

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// TestEnrollWithCode enrolls the first administrator of a new sensor with
// the one-time code it shows, over the admin API's real TLS, then lets that
// administrator issue a code for an endpoint.
func TestEnrollWithCode(t *testing.T) {
	store, eng := fixture(t)
	dir := t.TempDir()
	if _, err := pki.Init(dir, "Acme", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := lzconfig.Save(dir, lzconfig.LANZone{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	pin, err := pki.ServerPin(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(store, eng, nil)
	srv.HandleEnrollment(func() (Enroller, error) { return pki.Open(dir) })
	srv.HandleEnrollmentCodes(dir, time.Now)
	serverTLS, err := pki.AdminServerConfigWithCodes(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, srv, serverTLS)
	ctx := t.Context()

	code, err := pki.IssueFirstAdminCode(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	anon, err := NewCodeClient(url, pin)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()

	// Without a certificate nothing but the redemption answers.
	if _, err := anon.Endpoints(ctx); err == nil || !strings.Contains(err.Error(), "administrator certificate") {
		t.Fatalf("endpoints without a certificate: %v, want a refusal", err)
	}
	if _, err := anon.IssueCode(ctx, true); err == nil {
		t.Fatal("a client without a certificate was issued a code")
	}
	if _, err := anon.Enroll(ctx, "mallory", true); err == nil {
		t.Fatal("a client without a certificate enrolled an administrator without a code")
	}

	// A wrong pin never gets to send the code.
	other, err := pki.Init(t.TempDir(), "Other", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	otherPin, err := pki.ServerPin(other.Dir())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := NewCodeClient(url, otherPin)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if _, err := wrong.EnrollWithCode(ctx, "alice", code); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong pin: %v, want a pin mismatch", err)
	}

	alice, err := anon.EnrollWithCode(ctx, "alice", code)
	if err != nil {
		t.Fatal(err)
	}
	if !alice.Admin || alice.Name != "alice" || alice.Pin != pin {
		t.Fatalf("bundle %+v: want alice's administrator bundle with the sensor's pin", alice)
	}
	if _, err := anon.EnrollWithCode(ctx, "eve", code); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use of the code: %v, want a refusal", err)
	}
	if _, err := pki.IssueFirstAdminCode(dir, time.Now()); err == nil {
		t.Fatal("a first-administrator code was issued after an administrator exists")
	}

	// The administrator issues an endpoint's code; it enrolls an endpoint.
	adminTLS, err := pki.AdminClientConfig(alice)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := NewTLSClient(url, adminTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// The admin API re-reads the trust store once a second.
	var ans CodeAnswer
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ans, err = admin.IssueCode(ctx, false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new administrator's code request: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		admin.Close()
	}
	if time.Until(ans.Expires) > pki.CodeValidity || time.Until(ans.Expires) < pki.CodeValidity-time.Minute {
		t.Errorf("code expires at %v, want in an hour", ans.Expires)
	}
	web1, err := anon.EnrollWithCode(ctx, "web1", ans.Code)
	if err != nil {
		t.Fatal(err)
	}
	if web1.Admin || web1.Name != "web1" {
		t.Fatalf("bundle %+v: want web1's endpoint bundle", web1)
	}
	if _, err := admin.Endpoints(ctx); err != nil {
		t.Fatalf("the administrator's queries: %v", err)
	}
}
