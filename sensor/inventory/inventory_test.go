package inventory

import (
	"testing"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestLookup(t *testing.T) {
	v := Load()
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ mac, want string }{
		{"00:00:00:12:34:56", "XEROX CORPORATION"},
		{"00:50:56:aa:bb:cc", "VMware, Inc."},
		{"52:54:00:12:34:56", LocallyAdministered}, // qemu's default range
		{"02:00:5e:10:00:01", LocallyAdministered},
		{"fc:ff:ff:00:00:01", ""}, // unassigned
	} {
		if got := v.Label(schema.MustParseMAC(c.mac)); got != c.want {
			t.Errorf("Label(%s) = %q, want %q", c.mac, got, c.want)
		}
	}
}

// A MAC inside an MA-S block answers the block's owner, not the owner of
// the MA-L block that contains it (the IEEE's own registration authority).
func TestMostSpecificBlockWins(t *testing.T) {
	v := Load()
	var small uint64
	for p := range v.smallBlocks() {
		small = p
		break
	}
	m := schema.MACFromUint64(small<<12 | 0x001)
	got := v.Lookup(m)
	if got != v.small[small] {
		t.Fatalf("Lookup(%s) = %q, want the MA-S owner %q", m, got, v.small[small])
	}
	if large := v.large[uint32(small>>12)]; large == got {
		t.Logf("MA-S owner equals MA-L owner %q for %s", large, m)
	}
}

func (v *Vendors) smallBlocks() map[uint64]string {
	v.once.Do(v.decode)
	return v.small
}
