package main

import (
	"strings"
	"testing"
)

func TestNonsenseIntervalsRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := runApp(t, "init", "--dir", dir, "--org", "x", "--lan", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	fresh := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--dir", dir, "--missing-after", "-1"}, "--missing-after"},
		{[]string{"run", "--dir", dir, "--missing-after", "0"}, "--missing-after"},
		{[]string{"run", "--dir", dir, "--heartbeat-interval", "0s"}, "--heartbeat-interval"},
		{[]string{"run", "--dir", dir, "--heartbeat-interval", "-5s"}, "--heartbeat-interval"},
		{[]string{"init", "--dir", fresh, "--org", "x", "--lan", "127.0.0.1", "--heartbeat-interval", "0s"}, "--heartbeat-interval"},
	} {
		_, err := runApp(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "want") {
			t.Errorf("%v: %v, want an error naming %s and what to use", tc.args, err, tc.want)
		}
	}
}
