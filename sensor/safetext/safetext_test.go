package safetext

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                        "alice",
		"Zoë 名前":                       "Zoë 名前",
		"\x1b]0;pwned\x07":             `\x1b]0;pwned\x07`,
		"a\x00b":                       `a\x00b`,
		"evil\u202egnp.exe":            `evil\u202egnp.exe`,
		"iso\u2066late\u2069":          `iso\u2066late\u2069`,
		"line\nbreak\r":                `line\x0abreak\x0d`,
		"c1\u009bcsi":                  `c1\u009bcsi`,
		"bad\xffutf8":                  `bad\xffutf8`,
		"tab\there":                    `tab\x09here`,
		"\u2028sep\ufeff":              `\u2028sep\ufeff`,
		"C:\\Program Files\\agent.exe": "C:\\Program Files\\agent.exe",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(Append(nil, "a\nb\tc\x1b", true)); got != "a\nb\tc\\x1b" {
		t.Errorf("keepLines: %q", got)
	}
}

func FuzzString(f *testing.F) {
	f.Add("\x1b[2J\u202e\x00")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		for _, r := range out {
			if Unsafe(r) {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}
