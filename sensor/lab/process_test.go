package lab

import (
	"strings"
	"testing"
)

func TestLimitedBufferKeepsTheLatestOutput(t *testing.T) {
	b := &limitedBuffer{max: 100}
	for i := range 50 {
		b.Write([]byte(strings.Repeat(string(rune('a'+i%26)), 7)))
	}
	got := b.String()
	if len(got) > 100 || len(got) < 75 {
		t.Errorf("kept %d bytes, want between 75 and 100", len(got))
	}
	if !strings.HasSuffix(got, strings.Repeat("x", 7)) { // write 49 is 'x'
		t.Errorf("kept %q, want it to end with the last write", got)
	}
	b.Write([]byte(strings.Repeat("z", 300)))
	if got := b.String(); got != strings.Repeat("z", 100) {
		t.Errorf("after one oversized write: %q", got)
	}
}
