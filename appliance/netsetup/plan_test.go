package netsetup

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func nic(name, mac string) NIC {
	hw, _ := net.ParseMAC(mac)
	return NIC{Name: name, MAC: hw}
}

func TestMakePlan(t *testing.T) {
	nics := []NIC{nic("eth2", "52:54:00:00:00:03"), nic("eth0", "52:54:00:00:00:01"), nic("eth1", "52:54:00:00:00:02")}
	p, err := MakePlan(nics, "", nil)
	if err != nil || p.Mgmt.Name != "eth0" || !reflect.DeepEqual(p.CaptureNames(), []string{"eth1", "eth2"}) {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	p, err = MakePlan(nics, "52:54:00:00:00:03", []string{"52-54-00-00-00-01"})
	if err != nil || p.Mgmt.Name != "eth2" || !reflect.DeepEqual(p.CaptureNames(), []string{"eth0"}) {
		t.Fatalf("by MAC: %+v %v", p, err)
	}
	_, err = MakePlan(nics, "52:54:00:00:00:09", nil)
	if err == nil || !strings.Contains(err.Error(), "no such NIC") || !strings.Contains(err.Error(), "eth1=52:54:00:00:00:02") {
		t.Fatalf("unknown mgmt MAC: %v", err)
	}
	p, err = MakePlan(nics, "52:54:00:00:00:01", []string{"52:54:00:00:00:01", "52:54:00:00:00:02"})
	if err == nil || !strings.Contains(err.Error(), "is the management NIC") || !reflect.DeepEqual(p.CaptureNames(), []string{"eth1"}) {
		t.Fatalf("mgmt as capture: %+v %v", p, err)
	}
	if _, err := MakePlan(nil, "", nil); err == nil {
		t.Fatal("no NICs accepted")
	}
}
