package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

func TestPackageVersion(t *testing.T) {
	for _, c := range []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.0-0-g0123456789ab", 40, "1.2.0"},
		{"v1.2.0-3-g0123456789ab", 43, "1.2.0+git3.0123456789ab"},
		{"v1.2.0-3-g0123456789ab-dirty", 43, "1.2.0+git3.0123456789ab.dirty"},
		{"v1.3.0-rc1-0-g0123456789ab", 50, "1.3.0~rc1"},
		{"v1.3.0-rc1-2-g0123456789ab", 52, "1.3.0~rc1+git2.0123456789ab"},
		{"0123456789ab", 225, "0.0.0+git225.0123456789ab"},
		{"0123456789ab-dirty", 225, "0.0.0+git225.0123456789ab.dirty"},
	} {
		got, err := PackageVersion(c.describe, c.commits)
		if err != nil || got != c.want {
			t.Errorf("PackageVersion(%q, %d) = %q, %v; want %q", c.describe, c.commits, got, err, c.want)
		}
	}
	for _, bad := range []string{"release-3-g0123456789ab", "v1.0_beta-0-g0123456789ab", "not a commit", ""} {
		if got, err := PackageVersion(bad, 1); err == nil {
			t.Errorf("PackageVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// The versions must sort as the history does, for dpkg and rpm alike.
func TestPackageVersionsSortByHistory(t *testing.T) {
	testenv.RequireCommands(t, "dpkg", "rpm")
	ordered := []string{"0.0.0+git225.0123456789ab", "0.0.0+git226.ba9876543210", "1.3.0~rc1", "1.3.0~rc1+git2.0123456789ab", "1.3.0", "1.3.0+git1.0123456789ab"}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if out, err := exec.Command("dpkg", "--compare-versions", a, "lt", b).CombinedOutput(); err != nil {
			t.Errorf("dpkg: %s is not before %s: %v %s", a, b, err, out)
		}
		out, err := exec.Command("rpm", "--eval", fmt.Sprintf("%%{lua: print(rpm.vercmp(%q, %q))}", a, b)).Output()
		if err != nil || strings.TrimSpace(string(out)) != "-1" {
			t.Errorf("rpm: %s is not before %s: %q %v", a, b, out, err)
		}
	}
}
