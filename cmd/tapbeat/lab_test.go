package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// runApp runs the tapbeat CLI in process and returns its standard output.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(t.Context(), append([]string{"tapbeat"}, args...))
	return out.String(), err
}

func TestLabUpStatusDown(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool", "ping")
	dir := t.TempDir()
	name := testenv.UniqueName("tbc")
	t.Cleanup(func() { _, _ = runApp(t, "lab", "down", "--name", name, "--state-dir", dir) })

	out, err := runApp(t, "lab", "up", "--name", name, "--state-dir", dir, "--endpoints", "2",
		"--multi-homed", "2", "--unmanaged", "1", "--subnet", "172.16.9.0/24", "--verify", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st lab.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("up --format json printed %q: %v", out, err)
	}
	if st.Name != name || len(st.Endpoints) != 2 || len(st.Endpoints[1].Interfaces) != 2 || st.Endpoints[0].Managed ||
		st.Sensor.LAN.Addr.String() != "172.16.9.1/24" {
		t.Errorf("up described %+v", st)
	}

	out, err = runApp(t, "lab", "status", "--state-dir", dir, "--name", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{name + "-sensor", "mirror0", "172.16.9.13/24", "endpoint (unmanaged)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	out, err = runApp(t, "lab", "status", "--state-dir", dir, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var all []lab.State
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 || all[0].Name != name {
		t.Errorf("status --format json of all labs: %q, %v", out, err)
	}

	// Pull the mirror cable and plug it back in; take ep2's second port down.
	carrier := func(host, ifname string) string {
		t.Helper()
		out, err := runApp(t, "lab", "exec", "--name", name, "--state-dir", dir, host, "cat", "/sys/class/net/"+ifname+"/carrier")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	for _, step := range []struct{ target, updown, host, ifname, want string }{
		{"mirror", "down", "sensor", "mirror0", "0"},
		{"mirror", "up", "sensor", "mirror0", "1"},
		{"ep2:1", "down", "ep2", "eth1", "0"},
		{"ep2:1", "up", "ep2", "eth1", "1"},
	} {
		if _, err := runApp(t, "lab", "link", "--name", name, "--state-dir", dir, step.target, step.updown); err != nil {
			t.Fatal(err)
		}
		if got := carrier(step.host, step.ifname); got != step.want {
			t.Errorf("after link %s %s: %s %s carrier %q, want %q", step.target, step.updown, step.host, step.ifname, got, step.want)
		}
	}
	if _, err := runApp(t, "lab", "link", "--name", name, "--state-dir", dir, "ep2:x", "down"); err == nil {
		t.Error("link ep2:x accepted")
	}
	if _, err := runApp(t, "lab", "exec", "--name", name, "--state-dir", dir, "ep1", "false"); err == nil {
		t.Error("exec of a failing command succeeded")
	}

	if _, err := runApp(t, "lab", "up", "--name", name, "--state-dir", dir); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Errorf("second up: %v", err)
	}
	for range 2 {
		if _, err := runApp(t, "lab", "down", "--name", name, "--state-dir", dir); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("namespace %s left after down", e.Name())
		}
	}
	if _, err := runApp(t, "lab", "status", "--state-dir", dir, "--name", name); err == nil {
		t.Error("status of a lab that is down succeeded")
	}
}

func TestLabFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--state-dir", dir, "--multi-homed", "4"}, "numbered 1 to 3"},
		{[]string{"lab", "up", "--state-dir", dir, "--endpoints", "0"}, "at least one endpoint"},
		{[]string{"lab", "up", "--state-dir", dir, "--subnet", "10.1.2.300/24"}, "--subnet"},
		{[]string{"lab", "up", "--state-dir", dir, "--name", "a-b"}, "no '-'"},
		{[]string{"lab", "status", "--state-dir", dir, "--format", "xml"}, "want table or json"},
		{[]string{"lab", "down", "--state-dir", dir, "--name", "../x"}, "lab name"},
	} {
		_, err := runApp(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	out, err := runApp(t, "lab", "status", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "no labs") {
		t.Errorf("status with no labs: %q, %v", out, err)
	}
}
