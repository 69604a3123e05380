package labdeploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

const consolePassword = "lab console password"

// artifacts is where screenshots go: $TAPBEAT_ARTIFACTS if set, else a
// directory kept when the test fails.
func artifacts(t *testing.T) string {
	if d := os.Getenv("TAPBEAT_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "tapbeat-console-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screenshots kept in %s", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

// newBrowser starts headless Chromium inside the sensor's namespace (a
// browser on the management network), driven over a pipe.
func newBrowser(t *testing.T, l *lab.Lab) (context.Context, string) {
	t.Helper()
	testenv.RequireCommands(t, "chromium")
	downloads := t.TempDir()
	ns, err := l.Namespace(lab.HostSensor)
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "chromium-in-lab")
	script := "#!/bin/sh\nexec ip netns exec " + ns + " /usr/bin/chromium \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(wrapper),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		// The console's certificate comes from the lab's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// Open the tab on this context: a tab first opened under a context with
	// a timeout would close when that context ends.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, downloads
}

func screenshot(t *testing.T, b context.Context, dir, name string) {
	ctx, cancel := context.WithTimeout(b, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

// TestConsoleInBrowser drives the console with headless Chromium against a
// real sensor and real agents in the namespace lab.
func TestConsoleInBrowser(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping", "chromium")
	specs := []lab.EndpointSpec{{}, {}, {Unmanaged: true}, {Unmanaged: true}, {Unmanaged: true}}
	// Stations get 20 s before no_heartbeat: time to triage one in the
	// browser first.
	flag := filepath.Join(t.TempDir(), "av-stopped")
	d := upLabConsole(t, specs, flag)
	ctx := context.Background()
	shots := artifacts(t)
	lanAddr, err := d.Lab.Addr(lab.HostSensor)
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + net.JoinHostPort(lanAddr.String(), "8443")
	waitConnected(t, d, 2)

	b, downloads := newBrowser(t, d.Lab)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, actions...); err != nil {
			screenshot(t, b, shots, "failed-"+strings.ReplaceAll(what, " ", "-"))
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Log in.
	run("log in",
		chromedp.Navigate(base+"/endpoints"),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`#password`), consolePassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#endpoints`)),
	)

	// The endpoints show with the statuses the CLI reports.
	var cli endpointList
	queryJSON(t, d, &cli, "query", "endpoints")
	page := value[map[string]string](t, b, "read the endpoints table", chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("#endpoints tbody tr[data-id]")].map(r => [r.dataset.id, r.querySelector("td.status").textContent]))`))
	if len(cli.Endpoints) != 2 || len(page) != 2 {
		t.Fatalf("CLI lists %d endpoints, the page %d: %v", len(cli.Endpoints), len(page), page)
	}
	for _, e := range cli.Endpoints {
		if page[e.ID] != string(e.Status) {
			t.Errorf("%s: page says %q, CLI %q", e.Name, page[e.ID], e.Status)
		}
	}
	screenshot(t, b, shots, "console-endpoints")

	// A check turns red: the row turns red without a reload.
	ep1 := ""
	for _, e := range cli.Endpoints {
		if e.Name == "ep1" {
			ep1 = e.ID
		}
	}
	value[int](t, b, "mark the page", chromedp.Evaluate[int](`window.tapbeatNoReload = 1`))
	run("wait for the live stream", chromedp.WaitVisible(chromedp.CSS(`body[data-live="1"]`)))
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	red, err := d.WaitAlert(ctx, 20*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventStatusChanged && ev.EndpointID == ep1 && ev.Status == schema.StatusRed
	})
	if err != nil {
		t.Fatal(err)
	}
	storedAt := time.Now()
	run("see ep1 turn red", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#endpoints tr[data-id=%q] td.st-red`, ep1))))
	shown := time.Since(storedAt)
	noReload := value[bool](t, b, "check no reload", chromedp.Evaluate[bool](`window.tapbeatNoReload === 1`))
	if !noReload {
		t.Fatal("the page reloaded to show the red status")
	}
	// The alert log is written right after the event is stored, when it is
	// also published to the page: what is measured is the page's delay.
	if shown > 2*time.Second {
		t.Errorf("red shown %v after the sensor stored the change (event %d), want within 2 s", shown, red.Seq)
	}
	t.Logf("ep1 red on the page %v after the alert was logged", shown)
	screenshot(t, b, shots, "console-endpoint-red")

	// Triage ep4 as authorized before its no_heartbeat verdict; ep5 is the
	// control and gets one.
	keepTalking(t, d, "ep4", "ep5")
	mac4 := macOf(t, d.Lab, "ep4").String()
	run("see ep4 in the unmanaged list",
		chromedp.Navigate(base+"/unmanaged"),
		voidOf(chromedp.Poll[bool](fmt.Sprintf(`!!document.querySelector('tr[data-mac=%q]') || (location.reload(), false)`, mac4),
			chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(15*time.Second))),
	)
	row := fmt.Sprintf(`tr[data-mac=%q]`, mac4)
	run("triage ep4",
		chromedp.WaitVisible(chromedp.CSS(row+` select[name=state]`)),
		chromedp.SetValue(chromedp.CSS(row+` select[name=state]`), "authorized"),
		chromedp.SendKeys(chromedp.CSS(row+` input[name=note]`), "lab printer"),
		chromedp.Click(chromedp.CSS(row+` button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
		chromedp.WaitVisible(chromedp.CSS(row+` span.triage`)),
	)
	triage := value[string](t, b, "read triage", chromedp.Text(chromedp.CSS(row+` span.triage`)))
	if !strings.HasPrefix(triage, "authorized") {
		t.Fatalf("triage cell %q", triage)
	}
	screenshot(t, b, shots, "console-unmanaged")
	mac5 := macOf(t, d.Lab, "ep5")
	if _, err := d.WaitAlert(ctx, 40*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventNoHeartbeat && len(ev.MACs) > 0 && ev.MACs[0] == mac5
	}); err != nil {
		t.Fatalf("the control station ep5 raised no no_heartbeat: %v", err)
	}
	time.Sleep(3 * time.Second) // ep4 started talking with ep5; its deadline has passed too
	for _, ev := range alertsOf(t, d, schema.EventNoHeartbeat) {
		if len(ev.MACs) > 0 && ev.MACs[0].String() == mac4 {
			t.Fatalf("authorized station ep4 raised no_heartbeat: %+v", ev)
		}
	}

	// Enroll ep3 through the console, start its agent with the downloaded
	// bundle, see it green; then revoke it.
	run("enroll ep3",
		chromedp.Navigate(base+"/enroll"),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-name`)),
		chromedp.SendKeys(chromedp.CSS(`#enroll-name`), "ep3"),
		chromedp.Click(chromedp.CSS(`#enroll`)),
	)
	bundle := filepath.Join(downloads, "ep3.bundle.json")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(bundle); err == nil && fi.Size() > 0 {
			var probe map[string]any
			if data, _ := os.ReadFile(bundle); json.Unmarshal(data, &probe) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bundle downloaded to %s", downloads)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.MkdirAll(filepath.Dir(d.BundlePath("ep3")), 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(bundle)
	if err := os.WriteFile(d.BundlePath("ep3"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.StartAgent(ctx, "ep3"); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, d, 2) // ep2 and ep3 green (ep1 is red)
	run("see ep3 green",
		chromedp.Navigate(base+"/endpoints?q=ep3"),
		voidOf(chromedp.Poll[bool](`!!document.querySelector('#endpoints tbody td.st-green') || (location.reload(), false)`,
			chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(15*time.Second))),
	)
	run("revoke ep3",
		chromedp.Navigate(base+"/enroll"),
		chromedp.Click(chromedp.CSS(`#enrolled tr[data-name="ep3"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-name`)),
		chromedp.SendKeys(chromedp.CSS(`#confirm-name`), "ep3"),
		chromedp.Click(chromedp.CSS(`#revoke-yes`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	listed := value[bool](t, b, "check ep3 gone", chromedp.Evaluate[bool](`!!document.querySelector('#enrolled tr[data-name="ep3"]')`))
	if listed {
		t.Fatal("ep3 still enrolled after revocation")
	}
	screenshot(t, b, shots, "console-enroll")
	if _, err := d.WaitAlert(ctx, 20*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventOperatorAudit && strings.Contains(ev.Reason, "revoke ep3 by alice")
	}); err != nil {
		t.Fatalf("no operator_change event for the revocation: %v", err)
	}
	// Was any healthy endpoint called missing?
	for _, ev := range alertsOf(t, d, schema.EventHeartbeatMissing) {
		t.Errorf("an endpoint was called missing: %+v", ev)
	}
}

// upLabConsole brings up the lab with the console on the sensor's LAN
// address, an admin account, and agents whose check turns red when flag
// exists.
func upLabConsole(t *testing.T, specs []lab.EndpointSpec, flag string) *Deployment {
	t.Helper()
	ctx := context.Background()
	name := strings.ReplaceAll(testenv.UniqueName("w"), "-", "")
	l, err := lab.Up(ctx, lab.Config{Name: name, Endpoints: specs, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	lanAddr, err := l.Addr(lab.HostSensor)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Bin: binDir, Dir: filepath.Join(t.TempDir(), "sensor"), HeartbeatInterval: interval,
		ExtraConfig: "[correlation]\nno_heartbeat_after = \"20s\"\n",
		SensorArgs:  []string{"--web", net.JoinHostPort(lanAddr.String(), "8443")}}
	d, err := Deploy(ctx, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sensor log:\n%s", d.SensorOutput())
		}
		d.Stop()
	})
	// Accounts are read by the running sensor when the file changes.
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(consolePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Tapbeat(ctx, "user", "add", "--dir", opts.Dir, "--name", "alice", "--role", "admin", "--password-file", pw); err != nil {
		t.Fatal(err)
	}
	for _, ep := range l.Endpoints {
		if ep.Managed {
			check := "test ! -e " + flag + " || { echo 'antivirus stopped'; exit 2; }"
			if ep.Name != "ep1" {
				check = "true"
			}
			if err := d.StartAgent(ctx, ep.Name, check); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

func macOf(t *testing.T, l *lab.Lab, host string) schema.MAC {
	t.Helper()
	for _, ep := range l.Endpoints {
		if ep.Name == host {
			m, err := schema.ParseMAC(ep.Interfaces[0].MAC)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no host %s in the lab", host)
	return schema.MAC{}
}

// value runs an action that yields a value in the browser.
func value[T any](t *testing.T, b context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// voidOf drops an action's value.
func voidOf[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, tg)
		return chromedp.Void{}, err
	}
}
