package lab

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestValidateRejectsBadConfigsClearly(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: ""}, "lab name"},
		{Config{Name: "lab-1"}, "no '-'"},
		{Config{Name: "Lab"}, "lab name"},
		{Config{Name: strings.Repeat("a", 33)}, "lab name"},
		{Config{Name: "a", Subnet: netip.MustParsePrefix("8.8.8.0/24")}, "not private"},
		{Config{Name: "a", Subnet: netip.MustParsePrefix("10.0.0.0/25")}, "/16 to /24"},
		{Config{Name: "a", Subnet: netip.MustParsePrefix("fd00::/64")}, "IPv4"},
		{Config{Name: "a", Endpoints: []EndpointSpec{}}, "at least one endpoint"},
		{Config{Name: "a", Endpoints: []EndpointSpec{{Interfaces: 3}}}, "1 to 2"},
		{Config{Name: "a", Endpoints: Endpoints(190)}, "room for 189"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{Name: "tapbeat_1"}).Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	if err := (Config{Name: "a", Endpoints: Endpoints(189)}).Validate(); err != nil {
		t.Errorf("189 endpoints: %v", err)
	}
}

func TestPlanAddressesAndNames(t *testing.T) {
	cfg := Config{Name: "demo", Subnet: netip.MustParsePrefix("192.168.77.0/24"),
		Endpoints: []EndpointSpec{{}, {Interfaces: 2, Unmanaged: true}}}
	st := cfg.plan(time.Unix(0, 0))
	if got := st.Namespaces(); strings.Join(got, " ") != "demo-switch demo-sensor demo-ep1 demo-ep2" {
		t.Errorf("namespaces %v", got)
	}
	if st.Sensor.LAN.Addr.String() != "192.168.77.1/24" {
		t.Errorf("sensor address %s", st.Sensor.LAN.Addr)
	}
	var addrs, ports, macs []string
	for _, e := range st.Endpoints {
		for _, i := range e.Interfaces {
			addrs = append(addrs, i.Addr.String())
			ports = append(ports, i.Port)
			macs = append(macs, i.MAC)
		}
	}
	if strings.Join(addrs, " ") != "192.168.77.11/24 192.168.77.12/24 192.168.77.13/24" {
		t.Errorf("endpoint addresses %v", addrs)
	}
	if strings.Join(ports, " ") != "ep1p0 ep2p0 ep2p1" {
		t.Errorf("ports %v", ports)
	}
	seen := map[string]bool{st.Sensor.LAN.MAC: true}
	for _, m := range macs {
		if seen[m] || !strings.HasPrefix(m, "02:") {
			t.Errorf("MAC %s repeated or not locally administered: %v", m, macs)
		}
		seen[m] = true
	}
	if st.Endpoints[0].Managed == false || st.Endpoints[1].Managed {
		t.Errorf("managed flags %+v", st.Endpoints)
	}
	if ns, err := st.Namespace("ep2"); err != nil || ns != "demo-ep2" {
		t.Errorf("Namespace(ep2) = %q, %v", ns, err)
	}
	if _, err := st.Namespace("ep3"); err == nil || !strings.Contains(err.Error(), "hosts are switch, sensor, ep1, ep2") {
		t.Errorf("Namespace(ep3) error %v", err)
	}
	// Another lab gets other MACs.
	other := Config{Name: "demo2"}.plan(time.Unix(0, 0))
	if other.Endpoints[0].Interfaces[0].MAC == st.Endpoints[0].Interfaces[0].MAC {
		t.Error("two labs share MACs")
	}
}

func TestLinkLocalIsEUI64(t *testing.T) {
	mac := makeMAC([3]byte{0xaa, 0xbb, 0xcc}, 1, 0)
	if got := linkLocal(mac).String(); got != "fe80::aa:bbff:fecc:100" {
		t.Errorf("linkLocal(%s) = %s", mac, got)
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st := Config{Name: "rt", StateDir: dir, Endpoints: []EndpointSpec{{Interfaces: 2}}}.plan(time.Unix(1700000000, 0))
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(dir, "rt")
	if err != nil {
		t.Fatal(err)
	}
	if got.Endpoints[0].Interfaces[1].LinkLocal != st.Endpoints[0].Interfaces[1].LinkLocal ||
		got.Subnet != st.Subnet || !got.Created.Equal(st.Created) || got.Sensor.LAN.Addr != st.Sensor.LAN.Addr {
		t.Errorf("round trip changed the state:\n%+v\n%+v", st, got)
	}
	all, err := ListStates(dir)
	if err != nil || len(all) != 1 || all[0].Name != "rt" {
		t.Errorf("ListStates = %v, %v", all, err)
	}
	if err := writeFile(StatePath(dir, "bad"), "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(dir, "bad"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt state: %v", err)
	}
	if all, err := ListStates(dir); err == nil || len(all) != 1 {
		t.Errorf("ListStates with a corrupt file = %d states, %v; want the good one and an error", len(all), err)
	}
	if _, err := ReadState(dir, "none"); err == nil || !strings.Contains(err.Error(), "no lab state file") {
		t.Errorf("missing state: %v", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
