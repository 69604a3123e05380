package labdeploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// binDir holds tapbeat and tapbeat-agent built once for every test.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "tapbeat-e2e-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			for _, cmd := range []string{"tapbeat", "tapbeat-agent"} {
				build := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "github.com/tapbeat/tapbeat/cmd/"+cmd)
				build.Env = append(os.Environ(), "CGO_ENABLED=0")
				if out, err := build.CombinedOutput(); err != nil {
					fmt.Fprintf(os.Stderr, "build %s: %v\n%s", cmd, err, out)
					return 1
				}
			}
			binDir = dir
		}
		return m.Run()
	}()
	os.Exit(code)
}

const interval = 2 * time.Second

// upLab brings up a lab with the given endpoints, deploys the sensor and
// starts an agent on every managed endpoint.
func upLab(t *testing.T, specs []lab.EndpointSpec, opts Options) *Deployment {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping")
	ctx := context.Background()
	name := strings.ReplaceAll(testenv.UniqueName("e"), "-", "")
	stateDir := t.TempDir()
	l, err := lab.Up(ctx, lab.Config{Name: name, Endpoints: specs, StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	opts.Bin = binDir
	opts.Dir = filepath.Join(t.TempDir(), "sensor")
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = interval
	}
	d, err := Deploy(ctx, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out := d.SensorOutput()
		d.Stop()
		if t.Failed() {
			t.Logf("sensor log:\n%s", out)
		}
	})
	for _, ep := range l.Endpoints {
		if ep.Managed {
			if err := d.StartAgent(ctx, ep.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// keepTalking pings from each host to the sensor's LAN address every 300 ms
// until the test ends.
func keepTalking(t *testing.T, d *Deployment, hosts ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, err := d.KeepTalking(ctx, 300*time.Millisecond, hosts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
}

// endpointList is `tapbeat query endpoints --format json`.
type endpointList struct {
	Source    string                 `json:"source"`
	Endpoints []schema.EndpointState `json:"endpoints"`
}

func queryJSON(t *testing.T, d *Deployment, v any, args ...string) {
	t.Helper()
	out, err := d.Tapbeat(context.Background(), append(args, "--dir", d.Opts.Dir, "--format", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("tapbeat %v: %v\n%s", args, err, out)
	}
}

func alertsOf(t *testing.T, d *Deployment, typ schema.EventType) []schema.Event {
	t.Helper()
	evs, err := d.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	var out []schema.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// TestDemoScenario plays `make demo`'s scenario and then checks the timing of
// the alerts it raised against the rules' deadlines.
func TestDemoScenario(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping")
	work := t.TempDir()
	var out strings.Builder
	err := Demo(context.Background(), &out, DemoOptions{Bin: binDir, Name: strings.ReplaceAll(testenv.UniqueName("d"), "-", ""),
		StateDir: t.TempDir(), WorkDir: work})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	d := &Deployment{Opts: Options{Dir: filepath.Join(work, "sensor")}}
	evs, err := d.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[schema.EventType]bool{}
	for _, ev := range evs {
		seen[ev.Type] = true
	}
	for _, typ := range []schema.EventType{schema.EventNoHeartbeat, schema.EventStatusChanged, schema.EventPolicyViolation,
		schema.EventLateralMovement, schema.EventHeartbeatMissing, schema.EventHeartbeatRestored} {
		if !seen[typ] {
			t.Errorf("the demo raised no %s alert", typ)
		}
	}
	for _, q := range []string{"who", "unmanaged", "history --endpoint ep3"} {
		if !strings.Contains(out.String(), "tapbeat query "+q) {
			t.Errorf("the demo did not ask %q", q)
		}
	}
	// The forensic answers: who had ep3's address while it was missing,
	// and which station ran without a heartbeat.
	text := out.String()
	who := text[strings.Index(text, "tapbeat query who"):]
	who = who[:strings.Index(who, "==>")]
	for _, want := range []string{"Endpoint    ep3", "Status      missing"} {
		if !strings.Contains(who, want) {
			t.Errorf("who answered without %q:\n%s", want, who)
		}
	}
	unmanaged := text[strings.Index(text, "tapbeat query unmanaged"):]
	unmanaged = unmanaged[:strings.Index(unmanaged, "==>")]
	if n := strings.Count(unmanaged, "\n02:"); n != 1 {
		t.Errorf("unmanaged lists %d stations, want only ep5:\n%s", n, unmanaged)
	}
}

// TestMACConflictAndAuthFailed: two agents declare the same MAC, and a
// plaintext client knocks on the LAN zone.
func TestMACConflictAndAuthFailed(t *testing.T) {
	d := upLab(t, lab.Endpoints(1), Options{})
	ctx := context.Background()
	waitConnected(t, d, 1)
	// A second enrolled identity on the same machine declares the same MAC.
	if err := d.Enroll(ctx, "clone"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(d.Opts.Dir, "agents", "clone")
	clone, err := d.Lab.Start(ctx, "ep1", filepath.Join(binDir, "tapbeat-agent"), "run", "--bundle", d.BundlePath("clone"), "--state-dir", state)
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Stop()
	ev, err := d.WaitAlert(ctx, 5*interval, func(ev schema.Event) bool { return ev.Type == schema.EventMACConflict })
	if err != nil {
		t.Fatal(err)
	}
	itfs, _ := d.Lab.Interfaces("ep1")
	if d, ok := ev.Details.(*schema.MACConflictDetails); !ok || d.MAC.String() != strings.ToLower(itfs[0].MAC) {
		t.Errorf("mac_conflict details %+v, want ep1's MAC %s", ev.Details, itfs[0].MAC)
	}
	// Plaintext garbage on the TLS port.
	listen := d.Lab.ListenAddr(8347)
	conn, err := d.Lab.Dial(ctx, "ep1", "tcp", listen.String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_ = conn.Close()
	if _, err := d.WaitAlert(ctx, 5*interval, func(ev schema.Event) bool { return ev.Type == schema.EventAuthFailed }); err != nil {
		t.Fatal(err)
	}
}

// TestMissingTimingWithRealAgents stops an agent on purpose (it says
// goodbye) while its host keeps sending: a goodbye is no free pass, so
// missing comes within one interval of the rule's deadline, and restored
// with the agent's return. (A killed agent is caught sooner: drop_test.go.)
func TestMissingTimingWithRealAgents(t *testing.T) {
	d := upLab(t, lab.Endpoints(2), Options{})
	keepTalking(t, d, "ep1", "ep2")
	ctx := context.Background()
	waitConnected(t, d, 2)
	killed := time.Now()
	if err := d.StopAgent("ep1", false); err != nil {
		t.Fatal(err)
	}
	deadline := 3 * interval
	ev, err := d.WaitAlert(ctx, deadline+5*interval, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == "ep1"
	})
	if err != nil {
		t.Fatal(err)
	}
	// The last heartbeat came at most one interval before the kill.
	if took := ev.Time.Sub(killed); took < deadline-interval || took > deadline+interval {
		t.Errorf("missing %s after the kill, want within one interval of the %s deadline", took, deadline)
	}
	if n := len(alertsOf(t, d, schema.EventHeartbeatMissing)); n != 1 {
		t.Errorf("%d missing alerts, want only ep1's", n)
	}
	if err := d.StartAgent(ctx, "ep1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitAlert(ctx, 4*interval, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatRestored && ev.EndpointName == "ep1"
	}); err != nil {
		t.Fatal(err)
	}
}

func waitConnected(t *testing.T, d *Deployment, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var answer endpointList
		queryJSON(t, d, &answer, "query", "endpoints")
		list := answer.Endpoints
		connected := 0
		for _, e := range list {
			if e.Connected && (e.Status == schema.StatusGreen) {
				connected++
			}
		}
		if connected >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d endpoints connected and green after 20s: %+v", connected, n, list)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMultiHomedEndpoint: heartbeats go over one interface, traffic over the
// other; the endpoint is never missing. Without its agent, traffic on the
// second interface alone makes it missing.
func TestMultiHomedEndpoint(t *testing.T) {
	d := upLab(t, []lab.EndpointSpec{{Interfaces: 2}}, Options{})
	ctx := context.Background()
	itfs, err := d.Lab.Interfaces("ep1")
	if err != nil {
		t.Fatal(err)
	}
	sensorAddr, _ := d.Lab.Addr(lab.HostSensor)
	talk := func(ctx context.Context) {
		for ctx.Err() == nil {
			_, _ = d.Lab.Run(ctx, "ep1", "ping", "-n", "-c", "1", "-W", "1", "-I", itfs[1].Name, sensorAddr.String())
			time.Sleep(300 * time.Millisecond)
		}
	}
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	go talk(tctx)
	waitConnected(t, d, 1)
	time.Sleep(5 * interval)
	if n := len(alertsOf(t, d, schema.EventHeartbeatMissing)); n != 0 {
		t.Fatalf("a heartbeating multi-homed endpoint went missing")
	}
	if err := d.StopAgent("ep1", true); err != nil {
		t.Fatal(err)
	}
	ev, err := d.WaitAlert(ctx, 8*interval, func(ev schema.Event) bool { return ev.Type == schema.EventHeartbeatMissing })
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.MACs) != 2 {
		t.Errorf("missing alert names MACs %v, want both interfaces", ev.MACs)
	}
}

// TestRevokeMidSession: revoking an endpoint closes its connection, and its
// traffic then counts as no heartbeat.
func TestRevokeMidSession(t *testing.T) {
	d := upLab(t, lab.Endpoints(2), Options{})
	keepTalking(t, d, "ep1", "ep2")
	waitConnected(t, d, 2)
	ctx := context.Background()
	if _, err := d.Tapbeat(ctx, "revoke", "--dir", d.Opts.Dir, "--name", "ep2"); err != nil {
		t.Fatal(err)
	}
	itfs, _ := d.Lab.Interfaces("ep2")
	ev, err := d.WaitAlert(ctx, 10*interval, func(ev schema.Event) bool {
		return ev.Type == schema.EventNoHeartbeat && len(ev.MACs) > 0 && ev.MACs[0].String() == strings.ToLower(itfs[0].MAC)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after revocation: %s", ev.Reason)
	var answer endpointList
	queryJSON(t, d, &answer, "query", "endpoints")
	for _, e := range answer.Endpoints {
		if e.Name == "ep2" {
			t.Errorf("revoked ep2 still listed: %+v", e)
		}
	}
}

// TestRestartUnderLoad restarts the sensor while agents heartbeat: they
// reconnect, no false missing alert, history continues.
func TestRestartUnderLoad(t *testing.T) {
	d := upLab(t, lab.Endpoints(4), Options{})
	keepTalking(t, d, "ep1", "ep2", "ep3", "ep4")
	waitConnected(t, d, 4)
	if err := d.StopSensor(); err != nil {
		t.Logf("sensor stop: %v", err)
	}
	time.Sleep(interval)
	ctx := context.Background()
	if err := d.StartSensor(ctx); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, d, 4)
	time.Sleep(6 * interval) // past the startup grace and a missing deadline
	if n := len(alertsOf(t, d, schema.EventHeartbeatMissing)); n != 0 {
		t.Errorf("%d false missing alerts after the restart", n)
	}
	var hist []schema.Event
	queryJSON(t, d, &hist, "query", "history", "--endpoint", "ep1", "--since", "10m")
	if len(hist) < 2 {
		t.Errorf("history of ep1 after the restart has %d events, want those before and after", len(hist))
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Seq <= hist[i-1].Seq {
			t.Errorf("history sequence not increasing across the restart: %d after %d", hist[i].Seq, hist[i-1].Seq)
		}
	}
}

// TestCaptureLinkDownUp pulls the mirror cable: capture_degraded, no false
// missing while blind, and capture resumes by itself.
func TestCaptureLinkDownUp(t *testing.T) {
	d := upLab(t, lab.Endpoints(2), Options{})
	keepTalking(t, d, "ep1", "ep2")
	waitConnected(t, d, 2)
	ctx := context.Background()
	if err := d.Lab.SetMirrorLink(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitAlert(ctx, 5*interval, func(ev schema.Event) bool { return ev.Type == schema.EventCaptureDegraded }); err != nil {
		t.Fatal(err)
	}
	// An agent dies while the sensor is blind: no missing verdict.
	if err := d.StopAgent("ep2", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * interval)
	if n := len(alertsOf(t, d, schema.EventHeartbeatMissing)); n != 0 {
		t.Fatalf("missing raised while the capture was blind")
	}
	if err := d.Lab.SetMirrorLink(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitAlert(ctx, 10*interval, func(ev schema.Event) bool { return ev.Type == schema.EventCaptureRestored }); err != nil {
		t.Fatal(err)
	}
	// Capture works again: ep2, still talking, is now judged missing.
	if _, err := d.WaitAlert(ctx, 6*interval, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == "ep2"
	}); err != nil {
		t.Fatal(err)
	}
}

// TestAlertsReachRsyslog forwards the sensor's alerts to a real rsyslog
// running in the sensor's namespace.
func TestAlertsReachRsyslog(t *testing.T) {
	testenv.RequireCommands(t, "rsyslogd")
	dir := t.TempDir()
	received := filepath.Join(dir, "received.log")
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="5514")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file=%q template="raw")
`, dir, received)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	specs := []lab.EndpointSpec{{}, {Unmanaged: true}}
	d := upLab(t, specs, Options{SensorArgs: []string{"--syslog", "tcp://127.0.0.1:5514"}})
	ctx := context.Background()
	rs, err := d.Lab.Start(ctx, lab.HostSensor, "rsyslogd", "-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	keepTalking(t, d, "ep1", "ep2")
	if _, err := d.WaitAlert(ctx, 10*interval, func(ev schema.Event) bool { return ev.Type == schema.EventNoHeartbeat }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(received)
		if strings.Contains(string(b), "no_heartbeat") && strings.Contains(string(b), "tapbeat@32473") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog did not receive the no_heartbeat alert; it has:\n%s\nrsyslogd: %s", b, rs.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMetricsAndReload reads /metrics and /healthz, then adds a policy to
// the configuration file and reloads it with SIGHUP: the next flow is judged
// by it, and no connection drops.
func TestMetricsAndReload(t *testing.T) {
	testenv.RequireCommands(t, "curl")
	d := upLab(t, lab.Endpoints(2), Options{SensorArgs: []string{"--metrics", "127.0.0.1:9347"}})
	ctx := context.Background()
	keepTalking(t, d, "ep1", "ep2")
	waitConnected(t, d, 2)
	get := func(path string) string {
		t.Helper()
		out, err := d.Lab.Run(ctx, lab.HostSensor, "curl", "-s", "http://127.0.0.1:9347"+path)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// A sensor without [fleet] runs no fleet node: only the LAN zone and
	// the metrics listen.
	listening, err := d.Lab.Run(ctx, lab.HostSensor, "ss", "-ltnH")
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{":7422", ":7423"} {
		if strings.Contains(listening, port+" ") {
			t.Errorf("a sensor without a fleet listens on %s:\n%s", port, listening)
		}
	}
	if !strings.Contains(listening, ":8347 ") {
		t.Errorf("ss shows no LAN-zone listener, so it cannot show the absence of others:\n%s", listening)
	}
	metrics := get("/metrics")
	for end := time.Now().Add(5 * time.Second); !strings.Contains(metrics, "tapbeat_capture_packets_total") && time.Now().Before(end); {
		time.Sleep(200 * time.Millisecond)
		metrics = get("/metrics")
	}
	for _, want := range []string{`tapbeat_endpoints{status="green"} 2`, "tapbeat_lanzone_connections 2",
		`tapbeat_capture_packets_total{interface="mirror0"}`, "tapbeat_outbox_backlog", "tapbeat_history_bytes"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var health struct {
		Status    string         `json:"status"`
		Endpoints map[string]int `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(get("/healthz")), &health); err != nil || health.Status != "ok" || health.Endpoints["green"] != 2 {
		t.Errorf("/healthz: %+v (%v)", health, err)
	}

	ep1, _ := d.Lab.Addr("ep1")
	policy := fmt.Sprintf("\n[[correlation.policy]]\nname = \"reloaded\"\ndestinations = [\"%s\"]\nports = [7070]\nalert_source_without_heartbeat = true\nmin_source_health = \"green\"\n", ep1)
	f, err := os.OpenFile(filepath.Join(d.Opts.Dir, "tapbeat.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(policy); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.SensorOutput(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", d.SensorOutput())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ep2 is green, so make the rule bite on a host without a heartbeat: a
	// revoked ep2 no longer heartbeats.
	if _, err := d.Tapbeat(ctx, "revoke", "--dir", d.Opts.Dir, "--name", "ep2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval)
	if err := d.Lab.TCPExchange(ctx, "ep2", "ep1", 7070, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitAlert(ctx, 5*interval, func(ev schema.Event) bool {
		d, ok := ev.Details.(*schema.FlowDetails)
		return ev.Type == schema.EventPolicyViolation && ok && d.Policy == "reloaded"
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.AgentOutput("ep1"), "reconnect") {
		t.Errorf("ep1's agent reconnected during the reload:\n%s", d.AgentOutput("ep1"))
	}
}
