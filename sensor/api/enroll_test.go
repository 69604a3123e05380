package api

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// TestEnrollThroughAdminAPI enrolls and revokes an endpoint over mutual TLS
// with an administrator certificate of the organisation's real authority, as
// an administrator of an appliance without a shell does.
func TestEnrollThroughAdminAPI(t *testing.T) {
	store, eng := fixture(t)
	dir := t.TempDir()
	authority, err := pki.Init(dir, "Acme", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := lzconfig.Save(dir, lzconfig.LANZone{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	adminBundle, err := authority.Enroll("alice", pki.EnrollOptions{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	endpointBundle, err := authority.Enroll("laptop-0", pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(store, eng, nil)
	var auditMu sync.Mutex
	var audits []schema.Event
	srv.SetLimits(Limits{Record: func(ev schema.Event) {
		auditMu.Lock()
		defer auditMu.Unlock()
		audits = append(audits, ev)
	}})
	srv.HandleEnrollment(func() (Enroller, error) { return pki.Open(dir) })
	serverTLS, err := pki.AdminServerConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, srv, serverTLS)
	ctx := t.Context()

	adminTLS, err := pki.AdminClientConfig(adminBundle)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := NewTLSClient(url, adminTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	b, err := admin.Enroll(ctx, "laptop-1", false)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "laptop-1" || b.Org != "Acme" || b.Admin || b.Pin == "" || len(b.Addresses) != 1 {
		t.Errorf("bundle %+v, want an Acme endpoint bundle for laptop-1 with the sensor's pin and address", b)
	}
	if _, err := admin.Enroll(ctx, "bad name/..", false); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("a malformed host name was accepted: %v", err)
	}
	n, err := admin.Revoke(ctx, "laptop-1", false)
	if err != nil || n != 1 {
		t.Errorf("revoke laptop-1: %d, %v; want 1 certificate revoked", n, err)
	}
	// Both changes are operator_change events naming who did what; the
	// refused malformed name is none.
	auditMu.Lock()
	var changes []string
	for _, ev := range audits {
		if d, ok := ev.Details.(*schema.OperatorDetails); ok && ev.Type == schema.EventOperatorAudit {
			changes = append(changes, d.Action+" "+d.Target+" by "+d.Actor+" via "+d.Via)
		}
	}
	auditMu.Unlock()
	if want := "enroll laptop-1 by alice via certificate,revoke laptop-1 by alice via certificate"; strings.Join(changes, ",") != want {
		t.Errorf("operator changes %q, want %q", changes, want)
	}

	// An endpoint certificate is not an administrator's (the endpoint's own
	// client configuration: no session shared with the administrator).
	endpointTLS, err := pki.ClientConfig(endpointBundle)
	if err != nil {
		t.Fatal(err)
	}
	endpoint, err := NewTLSClient(url, endpointTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer endpoint.Close()
	if _, err := endpoint.Enroll(ctx, "laptop-2", false); err == nil {
		t.Error("an endpoint certificate enrolled a new endpoint through the admin API")
	}
}
