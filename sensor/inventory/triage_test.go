package inventory

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestTriage(t *testing.T) {
	path := filepath.Join(t.TempDir(), TriageFile)
	tr, err := OpenTriage(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	printer := schema.MustParseMAC("00:11:22:33:44:55")
	guest := schema.MustParseMAC("02:11:22:33:44:66")
	odd := schema.MustParseMAC("00:11:22:33:44:77")
	for _, e := range []TriageEntry{
		{MAC: printer, State: TriageAuthorized, Note: "floor 2 printer", By: "alice", Changed: now},
		{MAC: guest, State: TriageAuthorized, Expires: now.Add(time.Hour), By: "alice", Changed: now},
		{MAC: odd, State: TriageInvestigating, By: "bob", Changed: now},
	} {
		if err := tr.Set(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Set(TriageEntry{MAC: odd, State: "ignored"}); err == nil {
		t.Fatal("unknown state accepted")
	}
	macs, next := tr.Authorized(now)
	if !slices.Equal(macs, []string{printer.String(), guest.String()}) || !next.Equal(now.Add(time.Hour)) {
		t.Fatalf("Authorized = %v, %v", macs, next)
	}
	// After the expiry the guest is a station without heartbeat again.
	macs, next = tr.Authorized(now.Add(time.Hour))
	if !slices.Equal(macs, []string{printer.String()}) || !next.IsZero() {
		t.Fatalf("after expiry: %v, %v", macs, next)
	}
	again, err := OpenTriage(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.List(); len(got) != 3 || got[0].MAC != printer || got[0].Note != "floor 2 printer" {
		t.Fatalf("reloaded: %+v", got)
	}
}
