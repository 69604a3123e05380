package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAndDefaults(t *testing.T) {
	c, err := Parse([]byte(`
hostname = "sensor-1"
capture = ["52:54:00:00:00:02", "52:54:00:00:00:03"]
syslog = ["tcp://192.0.2.5:514"]
[mgmt]
mac = "52:54:00:00:00:01"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
dns = ["192.0.2.53"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.Defaults()
	if c.DataLabel != DefaultLabel || c.AdminListen != ":8348" || !reflect.DeepEqual(c.Listen, []string{":8347"}) {
		t.Errorf("defaults not applied: %+v", c)
	}
	p, gw, err := c.Mgmt.Static()
	if err != nil || p.String() != "192.0.2.10/24" || gw.String() != "192.0.2.1" {
		t.Errorf("static = %v %v %v", p, gw, err)
	}
	got := c.RunArgs("/data", []string{"eth1", "eth2"})
	want := []string{"run", "--dir", "/data", "--capture", "eth1", "--capture", "eth2", "--listen", ":8347",
		"--admin-listen", ":8348", "--syslog", "tcp://192.0.2.5:514", "--metrics", "127.0.0.1:9347"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RunArgs\n got %q\nwant %q", got, want)
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	_, err := Parse([]byte("captrue = [\"52:54:00:00:00:02\"]\n[mgmt]\nadress = \"dhcp\"\n"))
	if err == nil || !strings.Contains(err.Error(), "captrue") || !strings.Contains(err.Error(), "mgmt.adress") {
		t.Fatalf("want both misspelt keys named, got %v", err)
	}
	if _, err := Parse([]byte("capture = [")); err == nil {
		t.Fatal("broken TOML accepted")
	}
}

func TestValidateSaysEverythingWrong(t *testing.T) {
	c := Config{
		Mgmt:      Mgmt{MAC: "52:54:00:00:00:01", Address: "10.0.0.1", Gateway: "x", DNS: []string{"nope"}},
		Capture:   []string{"52:54:00:00:00:01", "zz"},
		LogSyslog: "http://x",
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"already used as mgmt mac", `capture mac "zz"`, `mgmt address "10.0.0.1"`, `mgmt dns "nope"`, "log_syslog"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := (Config{Mgmt: Mgmt{Gateway: "10.0.0.1"}}).Validate(); err == nil {
		t.Error("a gateway with dhcp accepted")
	}
}

func TestCmdlineOverridesFile(t *testing.T) {
	k, err := ParseCmdline("BOOT_IMAGE=/boot/vmlinuz console=ttyS0 tapbeat.mgmt=52:54:00:00:00:09 tapbeat.ip=10.1.2.3/16,10.1.0.1,10.1.0.53 tapbeat.capture=52:54:00:00:00:0a,52:54:00:00:00:0b tapbeat.format tapbeat.admin=:9443 quiet")
	if err != nil {
		t.Fatal(err)
	}
	file := Config{Hostname: "keep", Mgmt: Mgmt{MAC: "52:54:00:00:00:01", Address: "dhcp"}, Capture: []string{"52:54:00:00:00:02"}}
	c, err := k.Apply(file)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Hostname: "keep", Format: true, AdminListen: ":9443",
		Mgmt:    Mgmt{MAC: "52:54:00:00:00:09", Address: "10.1.2.3/16", Gateway: "10.1.0.1", DNS: []string{"10.1.0.53"}},
		Capture: []string{"52:54:00:00:00:0a", "52:54:00:00:00:0b"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	if k.Empty() {
		t.Error("Empty with parameters")
	}
}

func TestCmdlineErrors(t *testing.T) {
	_, err := ParseCmdline("tapbeat.mgnt=52:54:00:00:00:09 tapbeat.ip=dhcp")
	if err == nil || !strings.Contains(err.Error(), "tapbeat.mgnt is unknown") {
		t.Fatalf("typo not reported: %v", err)
	}
	k, _ := ParseCmdline("tapbeat.format=maybe")
	if _, err := k.Apply(Config{}); err == nil || !strings.Contains(err.Error(), "tapbeat.format=maybe") {
		t.Fatalf("bad format value not reported: %v", err)
	}
	k, _ = ParseCmdline("root=/dev/sda1")
	if !k.Empty() {
		t.Error("non-tapbeat parameters counted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, found, err := Load(filepath.Join(dir, FileName)); found || err != nil {
		t.Fatalf("missing file: found=%v err=%v", found, err)
	}
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p, []byte("hostname = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, found, err := Load(p)
	if !found || err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad file: found=%v err=%v", found, err)
	}
}

// FuzzCmdline checks that no command line crashes the parser and that every
// accepted one yields settings Apply handles.
func FuzzCmdline(f *testing.F) {
	f.Add("tapbeat.ip=10.0.0.1/24,10.0.0.254 tapbeat.mgmt=52:54:00:00:00:01")
	f.Add("tapbeat.format tapbeat.capture=,,, tapbeat.ip=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseCmdline(s)
		if err != nil {
			return
		}
		c, err := k.Apply(Config{})
		if err != nil {
			return
		}
		_ = c.Validate()
		_ = c.Defaults().RunArgs("/data", nil)
	})
}

func TestCmdlineQuotedOrganisation(t *testing.T) {
	k, err := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 tapbeat.format=1 tapbeat.org="Example Corp" tapbeat.hostname=hq quiet`)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Apply(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Org != "Example Corp" || c.Hostname != "hq" || !c.Format {
		t.Fatalf("config %+v: want org \"Example Corp\", hostname hq, format on", c)
	}
}
