package netsetup

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestCaptureNICIsSilent brings one end of a veth pair up as a capture NIC
// inside a namespace and checks, from the other end, that it receives but
// sends nothing (no ARP, no IPv6 router or neighbour solicitation, no MLD).
func TestCaptureNICIsSilent(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "ping")
	appl, peer := testenv.NewNetns(t), testenv.NewNetns(t)
	// As in the appliance: IPv6 is off by default before the NIC appears,
	// and the NIC is down until SetupCapture brings it up.
	appl.Do(t, func() {
		if err := DisableIPv6Default(); err != nil {
			t.Error(err)
		}
	})
	capIf, peerIf := testenv.UniqueName("tvc"), testenv.UniqueName("tvp")
	testenv.Run(t, "ip", "link", "add", capIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", capIf).Run() })
	testenv.Run(t, "ip", "link", "set", peerIf, "netns", peer.Name)
	testenv.Run(t, "ip", "link", "set", capIf, "netns", appl.Name)
	peer.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", peerIf)
	peer.Run(t, "ip", "link", "set", peerIf, "up")
	appl.Do(t, func() {
		if err := SetupCapture(capIf); err != nil {
			t.Error(err)
		}
	})
	flags := appl.Run(t, "ip", "-o", "link", "show", capIf)
	for _, want := range []string{"NOARP", "PROMISC", "UP"} {
		if !strings.Contains(flags, want) {
			t.Errorf("capture NIC flags lack %s: %s", want, flags)
		}
	}
	if strings.Contains(flags, "MULTICAST") {
		t.Errorf("capture NIC still multicast: %s", flags)
	}
	if a := appl.Run(t, "ip", "-o", "addr", "show", "dev", capIf); a != "" {
		t.Errorf("capture NIC has addresses: %s", a)
	}
	// Traffic towards the capture NIC: pings for addresses on its segment,
	// which an ARP-speaking host would answer.
	_ = peer.Command("ping", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.2").Run()
	time.Sleep(time.Second)
	rx := appl.Run(t, "cat", "/sys/class/net/"+capIf+"/statistics/rx_packets")
	tx := appl.Run(t, "cat", "/sys/class/net/"+capIf+"/statistics/tx_packets")
	if rx == "0" {
		t.Errorf("capture NIC received nothing")
	}
	if tx != "0" {
		t.Errorf("capture NIC transmitted %s frames", tx)
	}
}

// TestDHCPAndStatic gets a lease from dnsmasq across a veth pair, then
// replaces it with a static address.
func TestDHCPAndStatic(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "dnsmasq")
	appl, srv := testenv.NewNetns(t), testenv.NewNetns(t)
	mgmt, srvIf := testenv.Veth(t, appl, srv)
	srv.Run(t, "ip", "addr", "add", "198.51.100.1/24", "dev", srvIf)
	leases := filepath.Join(t.TempDir(), "leases")
	dns := srv.Command("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--interface="+srvIf, "--bind-interfaces", "--dhcp-range=198.51.100.50,198.51.100.60,255.255.255.0,2m",
		"--dhcp-option=option:router,198.51.100.1", "--dhcp-option=option:dns-server,198.51.100.53",
		"--dhcp-leasefile="+leases, "--pid-file=")
	out, _ := os.Create(filepath.Join(t.TempDir(), "dnsmasq.log"))
	dns.Stdout, dns.Stderr = out, out
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dns.Process.Kill(); _ = dns.Wait() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lease Lease
	var err error
	appl.Do(t, func() {
		lease, err = DHCP(ctx, slog.New(slog.DiscardHandler), mgmt, "tb-test", 15*time.Second, nil)
	})
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("DHCP: %v\ndnsmasq:\n%s", err, b)
	}
	if !netip.MustParsePrefix("198.51.100.48/28").Contains(lease.Address.Addr()) || lease.Address.Bits() != 24 {
		t.Errorf("lease address %s", lease.Address)
	}
	if lease.Gateway.String() != "198.51.100.1" || len(lease.DNS) != 1 || lease.DNS[0].String() != "198.51.100.53" {
		t.Errorf("lease %+v", lease)
	}
	if a := appl.Run(t, "ip", "-o", "-4", "addr", "show", "dev", mgmt); !strings.Contains(a, lease.Address.String()) {
		t.Errorf("address not applied: %s", a)
	}
	if r := appl.Run(t, "ip", "route", "show", "default"); !strings.Contains(r, "via 198.51.100.1 dev "+mgmt) {
		t.Errorf("default route not applied: %s", r)
	}
	if b, _ := os.ReadFile(leases); !strings.Contains(string(b), "tb-test") {
		t.Errorf("dnsmasq did not record the host name: %s", b)
	}

	appl.Do(t, func() {
		err = SetupStatic(mgmt, Lease{Address: netip.MustParsePrefix("198.51.100.7/24"), Gateway: netip.MustParseAddr("198.51.100.1")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := appl.Run(t, "ip", "-o", "-4", "addr", "show", "dev", mgmt); !strings.Contains(a, "198.51.100.7/24") {
		t.Errorf("static address not applied: %s", a)
	}
	if err := exec.Command("ip", "netns", "exec", srv.Name, "ping", "-c", "1", "-W", "2", "198.51.100.7").Run(); err != nil {
		t.Errorf("static address not reachable: %v", err)
	}
}

func TestWriteResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := WriteResolvConf(p, []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "nameserver 192.0.2.53\nnameserver 192.0.2.54\n" {
		t.Errorf("resolv.conf = %q", b)
	}
}
