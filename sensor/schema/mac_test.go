package schema

import "testing"

func TestParseMAC(t *testing.T) {
	want := MAC{0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc}
	for _, s := range []string{"00:11:22:aa:bb:cc", "00-11-22-AA-BB-CC", "0011.22aa.bbcc", "001122aabbcc"} {
		m, err := ParseMAC(s)
		if err != nil || m != want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %v", s, m, err, want)
		}
	}
	for _, s := range []string{"", "00:11:22:aa:bb", "00:11:22:aa:bb:cc:dd", "00:11:22:aa:bb:cg", "00 11 22 aa bb cc"} {
		if m, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", s, m)
		}
	}
}

// Every hello and every shared endpoint record parses its MACs.
func BenchmarkParseMAC(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMAC("02:00:5e:10:00:01"); err != nil {
			b.Fatal(err)
		}
	}
}
