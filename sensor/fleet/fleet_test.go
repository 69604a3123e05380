package fleet

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// Three sensor processes on loopback: the cluster forms over mutual TLS,
// the streams and buckets are replicated three times, the trust-store
// journal reaches every sensor (an enrollment made on s1 before the fleet
// existed, a revocation made on s3), heartbeat records are vouched for by
// the other sensors, an event published twice is stored once, and a
// query reaches every sensor.
func TestFleetThreeSensors(t *testing.T) {
	t.Parallel()
	dirs := newFleetDirs(t, "Example Org", 3)
	a1, err := pki.Open(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Enroll("e1", pki.EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	ms := make([]*member, 3)
	for i, d := range dirs {
		ms[i] = startMember(t, filepath.Base(d), d)
	}
	var st *Status
	defer func() {
		if t.Failed() {
			t.Logf("last status: %s", statusJSON(st))
		}
	}()
	took := waitFor(t, "three sensors registered with R3 streams that have leaders", 30*time.Second, func() bool {
		st = readStatus(t, dirs[0], "s1")
		if st == nil || len(st.Sensors) != 3 || len(st.Assets) != 5 {
			return false
		}
		for _, a := range st.Assets {
			if a.Replicas != 3 || a.Leader == "" {
				return false
			}
		}
		return st.Healthy
	})
	t.Logf("fleet of 3 healthy %v after start: %s", took.Round(time.Millisecond), statusJSON(st))

	// The enrollment made on s1 reaches s3's journal.
	waitFor(t, "e1 enrolled on s3", 10*time.Second, func() bool { return active(t, dirs[2], "e1") == 1 })
	// A revocation on s3 reaches s1 within 5 s.
	a3, err := pki.Open(dirs[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a3.Revoke("e1", false); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, "revocation made on s3 in s1's trust store", 5*time.Second, func() bool { return active(t, dirs[0], "e1") == 0 })
	t.Logf("revocation on s3 reached s1's journal after %v", took.Round(time.Millisecond))
	// No line was duplicated in any journal.
	for _, d := range dirs {
		n := 0
		waitFor(t, d+" journal holds the add and the revocation", 5*time.Second, func() bool {
			lines, _, err := pki.JournalLines(d, 0)
			n = len(lines)
			return err == nil && n >= 2
		})
		time.Sleep(200 * time.Millisecond)
		if lines, _, _ := pki.JournalLines(d, 0); len(lines) != 2 {
			t.Errorf("%s journal holds %d lines, want 2 (add, revoke)", d, len(lines))
		}
	}

	// Each sensor vouches for the endpoint another one holds.
	for _, m := range ms {
		want := "VOUCH 1 " + peerOf(m.name)
		waitFor(t, m.name+" vouches for "+peerOf(m.name)+"'s endpoint", 10*time.Second, func() bool { return m.last("VOUCH") == want })
	}

	cfg, _ := Load(dirs[1])
	nc, err := Dial(dirs[1], cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Every sensor published its event twice with the same Msg-Id: three stored.
	waitFor(t, "three events stored", 10*time.Second, func() bool {
		s, err := js.Stream(ctx, StreamEvents)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 3
	})
	time.Sleep(500 * time.Millisecond)
	s, _ := js.Stream(ctx, StreamEvents)
	if info, _ := s.Info(ctx); info.State.Msgs != 3 {
		t.Errorf("event stream holds %d messages, want 3 (one per sensor, duplicates dropped)", info.State.Msgs)
	}

	replies, missing, err := Ask(ctx, nc, "ping", []byte("hi"), []string{"s1", "s2", "s3"}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range replies {
		if !strings.Contains(string(r.Rows), r.Sensor) {
			t.Errorf("reply of %s: rows %s do not name it", r.Sensor, r.Rows)
		}
		got = append(got, r.Sensor)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"s1", "s2", "s3"}) || len(missing) != 0 {
		t.Errorf("query answered by %v, missing %v; want all three", got, missing)
	}

	// SIGKILL s3: the two others keep quorum and stay healthy; a query names s3 as missing.
	ms[2].kill()
	_, missing, err = Ask(ctx, nc, "ping", nil, []string{"s1", "s2", "s3"}, 2*time.Second)
	if err != nil || !slices.Equal(missing, []string{"s3"}) {
		t.Errorf("after killing s3: missing %v (%v), want [s3]", missing, err)
	}
	time.Sleep(DegradeAfter + 3*time.Second)
	for _, m := range ms[:2] {
		if l := m.last("HEALTH"); l != "HEALTH restored" {
			t.Errorf("%s after losing s3 of 3: %q, want it still healthy", m.name, l)
		}
	}

	// SIGKILL s2 too: s1, alone of three, is cut off from the majority. It
	// stops its JetStream (so its Raft terms do not run up), says why, and
	// starts it again when s2 returns.
	ms[1].kill()
	took = waitFor(t, "s1 degraded, cut off from the majority", 30*time.Second, func() bool {
		return strings.HasPrefix(ms[0].last("HEALTH"), "HEALTH degraded")
	})
	if h := ms[0].last("HEALTH"); !strings.Contains(h, "cut off from the majority of the fleet (routes to 0 of the other 2 sensors)") {
		t.Errorf("s1 alone of three: %q, want it cut off from the majority", h)
	}
	t.Logf("s1 alone of three degraded after %v: %s", took.Round(time.Millisecond), ms[0].last("HEALTH"))
	startMember(t, "s2", dirs[1])
	took = waitFor(t, "s1 restored after s2 returned", 60*time.Second, func() bool { return ms[0].last("HEALTH") == "HEALTH restored" })
	t.Logf("s1 restored %v after s2 was started again", took.Round(time.Millisecond))
}

func active(t *testing.T, dir, name string) int {
	t.Helper()
	ts, err := pki.OpenTrustStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ts.Entries() {
		if e.Name == name && e.Active() {
			n++
		}
	}
	return n
}

// Two sensors: losing one leaves no quorum. The survivor reports the fleet
// degraded and vouches for no MAC it does not hold itself; when the peer
// returns the fleet is restored.
func TestFleetTwoSensorsSurvivor(t *testing.T) {
	t.Parallel()
	dirs := newFleetDirs(t, "Two Sites", 2)
	m1 := startMember(t, "s1", dirs[0])
	m2 := startMember(t, "s2", dirs[1])
	waitFor(t, "s1 vouches for s2's endpoint", 30*time.Second, func() bool { return m1.last("VOUCH") == "VOUCH 1 s2" })
	st := readStatus(t, dirs[0], "s1")
	for _, a := range st.Assets {
		if a.Replicas != 2 {
			t.Errorf("%s: R%d in a fleet of two, want R2", a.Name, a.Replicas)
		}
	}
	m2.kill()
	took := waitFor(t, "s1 degraded after losing s2", 20*time.Second, func() bool { return strings.HasPrefix(m1.last("HEALTH"), "HEALTH degraded") })
	t.Logf("survivor degraded %v after its peer died: %s", took.Round(time.Millisecond), m1.last("HEALTH"))
	n := len(m1.lines())
	time.Sleep(time.Second)
	seen := 0
	for _, l := range m1.lines()[n:] {
		if strings.HasPrefix(l, "VOUCH") {
			seen++
			if l != "VOUCH 0 " {
				t.Errorf("degraded survivor vouched for s2's endpoint: %q, want unvouched (VOUCH 0)", l)
			}
		}
	}
	if seen == 0 {
		t.Error("the survivor stopped reporting what it vouches for")
	}
	startMember(t, "s2", dirs[1])
	took = waitFor(t, "s1 restored after s2 returned", 30*time.Second, func() bool { return m1.last("HEALTH") == "HEALTH restored" })
	t.Logf("restored %v after the peer restarted", took.Round(time.Millisecond))
}

// A node whose fleet certificate comes from another organisation's CA is
// refused on the cluster routes: it never appears in the registry, and it
// gets no quorum of its own.
func TestFleetRefusesForeignPeer(t *testing.T) {
	t.Parallel()
	dirs := newFleetDirs(t, "Good Org", 2)
	m1 := startMember(t, "s1", dirs[0])
	startMember(t, "s2", dirs[1])
	cfg1, _ := Load(dirs[0])

	evil := filepath.Join(t.TempDir(), "evil")
	if _, err := pki.Init(evil, "Good Org", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	writeLAN(t, evil)
	if _, err := SetAddr(evil, "evil", "127.0.0.1:"+itoa(freePort(t))); err != nil {
		t.Fatal(err)
	}
	c, _ := Load(evil)
	c.Peers = []string{cfg1.Addr}
	c.ClientPort = freePort(t)
	if err := Save(evil, c); err != nil {
		t.Fatal(err)
	}
	me := startMember(t, "evil", evil)
	waitFor(t, "s1 vouches for s2", 30*time.Second, func() bool { return m1.last("VOUCH") == "VOUCH 1 s2" })
	time.Sleep(3 * time.Second)
	st := readStatus(t, dirs[0], "s1")
	for _, s := range st.Sensors {
		if s.Name == "evil" {
			t.Errorf("a node of another CA joined the registry: %s", statusJSON(st))
		}
	}
	if me.saw("HEALTH restored") {
		t.Errorf("the foreign node reached a healthy fleet")
	}
	// A join file whose certificates another CA signed is refused.
	j, err := AddSensor(dirs[0], "s9", []netip.Addr{netip.MustParseAddr("127.0.0.1")}, "127.0.0.1:"+itoa(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(evil, pki.CACertFile))
	j.CACert = string(ca)
	p := filepath.Join(t.TempDir(), "s9.fleet.json")
	if err := j.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJoinFile(p); err == nil || !strings.Contains(err.Error(), "not signed by the file's CA") {
		t.Errorf("forged join file: err %v, want a refusal naming the CA", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
