package history

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime parses a time as the CLI takes it: RFC 3339 ("2026-11-17T14:05:00Z",
// "2026-11-17T15:05:00+01:00"), a date and wall time in loc ("2026-11-17 14:05",
// "2026-11-17T14:05:30", "2026-11-17"), "now", or a duration before now
// ("90s", "15m", "2h", "7d", "2w").
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if loc == nil {
		loc = time.Local
	}
	if s == "" || s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	if d, err := parseAgo(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-17T14:05:00Z), a local date and time (2026-11-17 14:05), or a duration ago (2h, 7d)", s)
}

func parseAgo(s string) (time.Duration, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), " ago")
	s = strings.TrimPrefix(s, "-")
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d, nil
}
