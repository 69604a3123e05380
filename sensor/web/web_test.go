package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/access"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

const (
	evilName = `<img src=x onerror=alert(1)>"ep`
	evilUser = `<script>alert("user")</script>`
	evilHost = `<script>alert('dhcp')</script>`
	password = "correct horse battery"
)

var testParams = access.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

// console is a console over a real history store, a real correlator and a
// real enrollment authority, served over TLS by httptest.
type console struct {
	t      *testing.T
	dir    string
	srv    *Server
	ts     *httptest.Server
	store  *history.Store
	engine *sensor.Engine
	triage *inventory.Triage
	users  *access.Store
	now    time.Time
	mu     sync.Mutex
	clock  time.Time // the console's clock (login limits)
}

func newConsole(t *testing.T) *console {
	t.Helper()
	c := &console{t: t, dir: t.TempDir(), now: time.Now().UTC()}
	c.clock = c.now
	if _, err := pki.Init(c.dir, "Example Corp", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := lzconfig.Save(c.dir, lzconfig.LANZone{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	var err error
	c.store, err = history.Open(filepath.Join(c.dir, "history"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.store.Close() })
	corr, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: 15 * time.Second}, &sensor.ManualClock{T: c.now})
	if err != nil {
		t.Fatal(err)
	}
	var srv *Server
	c.engine = sensor.NewEngine(corr, func(evs []schema.Event) {
		if err := c.store.Append(evs, nil); err != nil {
			t.Errorf("store events: %v", err)
		}
		if srv != nil {
			srv.Publish(evs)
		}
	})
	c.triage, err = inventory.OpenTriage(filepath.Join(c.dir, inventory.TriageFile))
	if err != nil {
		t.Fatal(err)
	}
	c.users = access.Open(c.dir, testParams)
	for _, u := range []struct {
		name string
		role access.Role
	}{{"alice", access.RoleAdmin}, {"victor", access.RoleViewer}} {
		if err := c.users.AddUser(u.name, u.role, []byte(password), c.now); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := pki.OpenTrustStore(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := pki.Open(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := auth.IssueWebServer([]string{"127.0.0.1"}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, verify, err := pki.ConsoleTLS(c.dir, cert)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = New(Options{
		AdminVerifier: verify,
		Live:          c.engine, History: c.store, Access: c.users, Triage: c.triage,
		OpenAuthority: func() (Enroller, error) { return pki.Open(c.dir) },
		Enrolled:      func() ([]pki.Entry, error) { _, err := ts.Refresh(); return ts.Entries(), err },
		Record:        c.engine.Record,
		Now: func() time.Time {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.clock
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.srv = srv
	c.ts = httptest.NewUnstartedServer(srv)
	c.ts.EnableHTTP2 = true
	c.ts.TLS = tlsCfg
	c.ts.StartTLS()
	t.Cleanup(c.ts.Close)
	return c
}

func (c *console) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock = c.clock.Add(d)
}

// seed adds an endpoint whose name and users carry markup, and a station
// without heartbeat whose DHCP host name does.
func (c *console) seed() (epID string, station schema.MAC) {
	c.t.Helper()
	epID = "ep-evil"
	mac := schema.MustParseMAC("00:50:56:01:02:03")
	if err := c.engine.Hello(schema.Hello{EndpointID: epID, Name: evilName, Org: "Example Corp", Health: schema.HealthRed,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: mac, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}}},
		Users:      []string{evilUser}}); err != nil {
		c.t.Fatal(err)
	}
	station = schema.MustParseMAC("02:aa:bb:cc:dd:ee")
	ip := netip.MustParseAddr("10.0.0.99")
	if err := c.store.AddBindings([]schema.Binding{{MAC: station, IP: ip, Hostname: evilHost, Source: "dhcp", Time: c.now}}); err != nil {
		c.t.Fatal(err)
	}
	c.engine.Record(schema.Event{Time: c.now, Type: schema.EventNoHeartbeat, Severity: schema.SeverityWarning,
		MACs: []schema.MAC{station}, IPs: []netip.Addr{ip}, Reason: "station without heartbeat",
		Details: &schema.NoHeartbeatDetails{Bytes: 1000, Packets: 10, FirstSeen: c.now}})
	return epID, station
}

// client is a browser-like client: a cookie jar, no redirects followed.
func (c *console) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	cl := *c.ts.Client() // a copy: the server's client is shared
	cl.Jar = jar
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cl
}

func (c *console) login(name string) (*http.Client, string) {
	c.t.Helper()
	cl := c.client()
	resp := c.post(cl, "/login", url.Values{"name": {name}, "password": {password}}, "")
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login %s: %s", name, resp.Status)
	}
	// The session cookie is Secure, HttpOnly and SameSite=Strict.
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{SessionCookie + "=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, want) {
			c.t.Fatalf("session cookie %q lacks %s", sc, want)
		}
	}
	body := c.get(cl, "/", http.StatusOK)
	m := regexp.MustCompile(`data-csrf="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on the page")
	}
	return cl, m[1]
}

func (c *console) get(cl *http.Client, path string, want int) string {
	c.t.Helper()
	resp, err := cl.Get(c.ts.URL + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("GET %s: %s, want %d: %s", path, resp.Status, want, b)
	}
	return string(b)
}

func (c *console) post(cl *http.Client, path string, form url.Values, origin string) *http.Response {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin == "" {
		origin = c.ts.URL
	}
	req.Header.Set("Origin", origin)
	resp, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (c *console) do(cl *http.Client, method, path, body string, hdr map[string]string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.ts.URL+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// concrete fills a route pattern's wildcards.
func concrete(p string) string {
	return strings.NewReplacer("{id}", "ep-evil", "{mac}", "02:aa:bb:cc:dd:ee", "{$}", "").Replace(p)
}

func TestEveryRouteRefusesWithoutSessionOrToken(t *testing.T) {
	c := newConsole(t)
	c.seed()
	cl := c.client()
	n := 0
	for _, rt := range c.srv.routes() {
		if rt.Public {
			continue
		}
		n++
		for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer tbt_forged"}, {"Cookie": SessionCookie + "=forged"}} {
			code, body := c.do(cl, rt.Method, concrete(rt.Path), "{}", hdr)
			switch {
			case rt.Page && rt.Method == "GET" && hdr["Authorization"] == "":
				if code != http.StatusSeeOther {
					t.Errorf("%s %s %v: %d, want a redirect to the login page", rt.Method, rt.Path, hdr, code)
				}
			case code != http.StatusUnauthorized:
				t.Errorf("%s %s %v: %d %s, want 401", rt.Method, rt.Path, hdr, code, body)
			}
			if code != http.StatusSeeOther && (strings.Contains(body, "ep-evil") || strings.Contains(body, "02:aa:bb:cc:dd:ee")) {
				t.Errorf("%s %s: anonymous answer leaks data: %s", rt.Method, rt.Path, body)
			}
		}
	}
	if n < 25 {
		t.Fatalf("only %d routes checked", n)
	}
	// Static files are the only thing served to anyone.
	c.get(cl, "/static/app.js", http.StatusOK)
}

func TestViewerCannotChangeAnything(t *testing.T) {
	c := newConsole(t)
	c.seed()
	cl, csrf := c.login("victor")
	tok, err := c.users.AddToken("siem", access.RoleViewer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	changes := 0
	for _, rt := range c.srv.routes() {
		if !rt.Change {
			continue
		}
		changes++
		body := `{"name":"laptop-1","state":"authorized"}`
		for _, hdr := range []map[string]string{
			{"X-CSRF-Token": csrf, "Origin": c.ts.URL, "Content-Type": "application/json"},
			{"Authorization": "Bearer " + tok, "Content-Type": "application/json"},
		} {
			client := cl
			if hdr["Authorization"] != "" {
				client = c.client()
			}
			code, resp := c.do(client, rt.Method, concrete(rt.Path), body, hdr)
			if code != http.StatusForbidden {
				t.Errorf("viewer %s %s: %d %s, want 403", rt.Method, rt.Path, code, resp)
			}
		}
	}
	if changes < 5 {
		t.Fatalf("only %d change routes", changes)
	}
	if l := c.triage.List(); len(l) != 0 {
		t.Fatalf("a viewer changed the triage list: %+v", l)
	}
	a, _ := pki.OpenTrustStore(c.dir)
	if n := a.Len(); n != 0 {
		t.Fatalf("a viewer enrolled %d certificates", n)
	}
	// Reading works.
	if code, _ := c.do(c.client(), "GET", "/api/v1/endpoints", "", map[string]string{"Authorization": "Bearer " + tok}); code != 200 {
		t.Fatalf("viewer token GET endpoints: %d", code)
	}
	c.get(cl, "/unmanaged", http.StatusOK)
}

func TestChangeNeedsCSRFAndOrigin(t *testing.T) {
	c := newConsole(t)
	_, station := c.seed()
	cl, csrf := c.login("alice")
	path := "/unmanaged/" + station.String()
	form := url.Values{"state": {"authorized"}, "note": {"lab printer"}}
	if resp := c.post(cl, path, form, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no CSRF token: %s", resp.Status)
	}
	form.Set("csrf", "wrong"+csrf)
	if resp := c.post(cl, path, form, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %s", resp.Status)
	}
	form.Set("csrf", csrf)
	if resp := c.post(cl, path, form, "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Origin: %s", resp.Status)
	}
	if _, ok := c.triage.Get(station); ok {
		t.Fatal("a refused request changed the triage list")
	}
	if resp := c.post(cl, path, form, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with CSRF token: %s", resp.Status)
	}
	e, ok := c.triage.Get(station)
	if !ok || e.State != inventory.TriageAuthorized || e.By != "alice" || e.Note != "lab printer" {
		t.Fatalf("triage entry %+v", e)
	}
	// The change is in history: who did what.
	evs, err := c.store.Alerts(history.AlertQuery{Types: []schema.EventType{schema.EventOperatorAudit}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if d, ok := ev.Details.(*schema.OperatorDetails); ok && d.Actor == "alice" && d.Target == station.String() && d.Via == viaSession {
			found = true
		}
	}
	if !found {
		t.Fatal("no operator_change event for the triage")
	}
	// An admin token changes without CSRF token, but not from a foreign page.
	tok, _ := c.users.AddToken("automation", access.RoleAdmin, c.now)
	code, body := c.do(c.client(), "PUT", "/api/v1/unmanaged/"+station.String(), `{"state":"blocked","note":"stolen"}`,
		map[string]string{"Authorization": "Bearer " + tok})
	if code != 200 || !strings.Contains(body, `"blocked"`) {
		t.Fatalf("admin token PUT: %d %s", code, body)
	}
	code, _ = c.do(c.client(), "PUT", "/api/v1/unmanaged/"+station.String(), `{"state":"new"}`,
		map[string]string{"Authorization": "Bearer " + tok, "Origin": "https://evil.example"})
	if code != http.StatusForbidden {
		t.Fatalf("admin token from a foreign Origin: %d", code)
	}
}

func TestWrongPasswordsAreRateLimited(t *testing.T) {
	c := newConsole(t)
	cl := c.client()
	for i := 0; i < loginBurst; i++ {
		resp := c.post(cl, "/login", url.Values{"name": {"alice"}, "password": {"wrong password " + fmt.Sprint(i)}}, "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %s", i, resp.Status)
		}
	}
	resp := c.post(cl, "/login", url.Values{"name": {"alice"}, "password": {password}}, "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures the right password: %s, want 429 with Retry-After", loginBurst, resp.Status)
	}
	// Another account from the same source is limited too (per source).
	resp = c.post(cl, "/login", url.Values{"name": {"victor"}, "password": {password}}, "")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("other account, same source: %s", resp.Status)
	}
	c.advance(loginRefill + time.Second)
	resp = c.post(cl, "/login", url.Values{"name": {"alice"}, "password": {password}}, "")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the refill: %s", resp.Status)
	}
	// Per account: failures from many sources lock the account, not others.
	var l loginLimits
	l.m = map[string]*rate.Limiter{}
	now := c.now
	for i := 0; i < loginBurst; i++ {
		l.failed(fmt.Sprintf("192.0.2.%d", i), "bob", now)
	}
	if ok, _ := l.allowed("198.51.100.1", "bob", now); ok {
		t.Fatal("an account attacked from many sources is not limited")
	}
	if ok, _ := l.allowed("198.51.100.1", "carol", now); !ok {
		t.Fatal("a fresh source and account is limited")
	}
}

func TestMarkupIsEscapedEverywhere(t *testing.T) {
	c := newConsole(t)
	epID, station := c.seed()
	cl, _ := c.login("alice")
	raw := []string{evilName, evilUser, evilHost, "<script>alert", "<img"}
	pages := []string{"/", "/endpoints", "/endpoints?q=img", "/endpoints/" + epID, "/unmanaged", "/alerts",
		"/forensics?ip=10.0.0.99", "/forensics?ip=10.0.0.5", "/enroll"}
	for _, p := range pages {
		body := c.get(cl, p, http.StatusOK)
		for _, r := range raw {
			if strings.Contains(body, r) {
				t.Errorf("%s shows %q unescaped", p, r)
			}
		}
	}
	// The escaped forms are there: the data is shown, as text.
	if body := c.get(cl, "/endpoints/"+epID, http.StatusOK); !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") ||
		!strings.Contains(body, "&lt;script&gt;alert(&#34;user&#34;)&lt;/script&gt;") {
		t.Errorf("endpoint page lacks the escaped name or user")
	}
	if body := c.get(cl, "/unmanaged", http.StatusOK); !strings.Contains(body, "&lt;script&gt;alert(&#39;dhcp&#39;)&lt;/script&gt;") {
		t.Errorf("unmanaged page lacks the escaped DHCP host name")
	}
	// Charts carry the name in their titles, escaped.
	if body := c.get(cl, "/endpoints/"+epID, http.StatusOK); !strings.Contains(body, "<title>Status, last 24 h of &lt;img") {
		t.Errorf("timeline title not escaped")
	}
	// Live updates: JSON with markup characters escaped; the page inserts
	// them with textContent.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.ts.URL+"/api/v1/events", nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, _ := rd.ReadString('\n') // retry
	_ = line
	c.engine.Record(schema.Event{Type: schema.EventNoHeartbeat, Severity: schema.SeverityWarning, Time: time.Now(),
		EndpointName: evilName, MACs: []schema.MAC{station}, Reason: evilHost})
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if strings.ContainsAny(line, "<>") {
			t.Fatalf("live update carries raw markup: %s", line)
		}
		var ev struct {
			Reason       string `json:"reason"`
			EndpointName string `json:"endpoint_name"`
			Alert        bool   `json:"alert"`
		}
		if err := json.Unmarshal([]byte(line[len("data: "):]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Reason == evilHost && ev.EndpointName == evilName && ev.Alert {
			break
		}
	}
	js, _ := assets.ReadFile("assets/static/app.js")
	if strings.Contains(string(js), "innerHTML") || strings.Contains(string(js), "insertAdjacentHTML") {
		t.Fatal("app.js inserts markup")
	}
}

func TestEndpointsSortFilterPage(t *testing.T) {
	c := newConsole(t)
	for i := 0; i < 120; i++ {
		h := schema.HealthGreen
		if i%10 == 0 {
			h = schema.HealthRed
		}
		if err := c.engine.Hello(schema.Hello{EndpointID: fmt.Sprintf("ep-%03d", i), Name: fmt.Sprintf("host-%03d", i), Health: h,
			Interfaces: []schema.Interface{{Name: "eth0", MAC: schema.MACFromUint64(0x005056000000 + uint64(i))}}}); err != nil {
			t.Fatal(err)
		}
	}
	tok, _ := c.users.AddToken("siem", access.RoleViewer, c.now)
	get := func(q string) EndpointPage {
		code, body := c.do(c.client(), "GET", "/api/v1/endpoints?"+q, "", map[string]string{"Authorization": "Bearer " + tok})
		if code != 200 {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		var p EndpointPage
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := get("sort=name&per=50&page=3")
	if p.Total != 120 || p.Pages != 3 || len(p.Endpoints) != 20 || p.Endpoints[0].Name != "host-100" {
		t.Fatalf("page 3: total %d pages %d rows %d first %q", p.Total, p.Pages, len(p.Endpoints), p.Endpoints[0].Name)
	}
	p = get("sort=name&desc=1&status=red")
	if p.Total != 12 || p.Endpoints[0].Name != "host-110" || p.Counts["red"] != 12 || p.Counts["green"] != 108 {
		t.Fatalf("red, descending: %+v", p)
	}
	if p.Endpoints[0].Vendors[0] != "VMware, Inc." {
		t.Fatalf("vendor %q", p.Endpoints[0].Vendors)
	}
	p = get("q=host-05")
	if p.Total != 10 {
		t.Fatalf("q=host-05: %d", p.Total)
	}
	if code, _ := c.do(c.client(), "GET", "/api/v1/endpoints?sort=bogus", "", map[string]string{"Authorization": "Bearer " + tok}); code != 400 {
		t.Fatalf("bad sort: %d", code)
	}
}

func TestOpenAPIDescribesEveryAPIRoute(t *testing.T) {
	c := newConsole(t)
	tok, _ := c.users.AddToken("siem", access.RoleViewer, c.now)
	code, body := c.do(c.client(), "GET", "/api/v1/openapi.json", "", map[string]string{"Authorization": "Bearer " + tok})
	if code != 200 {
		t.Fatal(code)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rt := range c.srv.routes() {
		if !strings.HasPrefix(rt.Path, "/api/v1/") {
			continue
		}
		n++
		if _, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]; !ok {
			t.Errorf("%s %s missing from the OpenAPI document", rt.Method, rt.Path)
		}
	}
	if doc.OpenAPI != "3.1.0" || n < 15 {
		t.Fatalf("openapi %q, %d routes", doc.OpenAPI, n)
	}
}

func TestEnrollAndRevokeThroughTheConsole(t *testing.T) {
	c := newConsole(t)
	cl, csrf := c.login("alice")
	req, _ := http.NewRequest("POST", c.ts.URL+"/enroll", strings.NewReader(url.Values{"name": {"laptop-9"}, "csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.ts.URL)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "laptop-9.bundle.json") {
		t.Fatalf("enroll: %s %s", resp.Status, data)
	}
	path := filepath.Join(t.TempDir(), "b.json")
	os.WriteFile(path, data, 0o600)
	b, err := pki.ReadBundle(path)
	if err != nil || b.Name != "laptop-9" {
		t.Fatalf("bundle: %v %+v", err, b)
	}
	if body := c.get(cl, "/enroll", 200); !strings.Contains(body, `data-name="laptop-9"`) {
		t.Fatal("enrolled list lacks laptop-9")
	}
	// Revoking asks for the name first.
	if resp := c.post(cl, "/revoke", url.Values{"name": {"laptop-9"}, "csrf": {csrf}}, ""); resp.StatusCode != http.StatusSeeOther ||
		!strings.Contains(resp.Header.Get("Location"), "revoke=laptop-9") {
		t.Fatalf("revoke without confirmation: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	if body := c.get(cl, "/enroll", 200); !strings.Contains(body, `data-name="laptop-9"`) {
		t.Fatal("unconfirmed revocation removed laptop-9")
	}
	if resp := c.post(cl, "/revoke", url.Values{"name": {"laptop-9"}, "confirm": {"laptop-9"}, "csrf": {csrf}}, ""); resp.StatusCode != http.StatusSeeOther ||
		!strings.Contains(resp.Header.Get("Location"), "done=") {
		t.Fatalf("confirmed revoke: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	if body := c.get(cl, "/enroll", 200); strings.Contains(body, `data-name="laptop-9"`) {
		t.Fatal("laptop-9 still listed after revocation")
	}
}

// An administrator certificate (tapbeat enroll --admin) works on the
// console's listener as on the admin API; an endpoint's certificate, a
// revoked one or one from another CA does not get in.
func TestAdminCertificate(t *testing.T) {
	c := newConsole(t)
	_, station := c.seed()
	a, err := pki.Open(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	client := func(b *pki.Bundle) *http.Client {
		cert, err := b.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(a.CACertificate())
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "127.0.0.1"}}}
	}
	admin, err := a.Enroll("admin-1", pki.EnrollOptions{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	cl := client(admin)
	time.Sleep(1100 * time.Millisecond) // the trust store is re-read at most once a second
	// The console's certificate is the organisation's: the client verifies it.
	code, body := c.do(cl, "PUT", "/api/v1/unmanaged/"+station.String(), `{"state":"investigating"}`, nil)
	if code != 200 {
		t.Fatalf("admin certificate PUT: %d %s", code, body)
	}
	evs, _ := c.store.Alerts(history.AlertQuery{Types: []schema.EventType{schema.EventOperatorAudit}})
	if len(evs) != 1 || evs[0].Details.(*schema.OperatorDetails).Via != viaCertificate || evs[0].Details.(*schema.OperatorDetails).Actor != "admin-1" {
		t.Fatalf("audit %+v", evs)
	}
	ep, err := a.Enroll("laptop-1", pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(ep).Get(c.ts.URL + "/api/v1/endpoints"); err == nil {
		t.Fatal("an endpoint certificate got through the handshake")
	}
	if _, err := a.Revoke("admin-1", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the trust store is re-read at most once a second
	if _, err := client(admin).Get(c.ts.URL + "/api/v1/endpoints"); err == nil {
		t.Fatal("a revoked admin certificate got through the handshake")
	}
}

func TestAlertFilters(t *testing.T) {
	c := newConsole(t)
	epID, station := c.seed()
	c.engine.Record(schema.Event{Type: schema.EventLateralMovement, Severity: schema.SeverityCritical, EndpointID: epID,
		EndpointName: evilName, Reason: "flow to a red endpoint", Details: &schema.FlowDetails{SrcMAC: station, DstMAC: schema.MustParseMAC("00:50:56:01:02:03"), Proto: "tcp"}})
	tok, _ := c.users.AddToken("siem", access.RoleViewer, c.now)
	get := func(q string) []schema.Event {
		code, body := c.do(c.client(), "GET", "/api/v1/alerts?"+q, "", map[string]string{"Authorization": "Bearer " + tok})
		if code != 200 {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		var evs []schema.Event
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			t.Fatal(err)
		}
		return evs
	}
	if evs := get("type=lateral_movement"); len(evs) != 1 || evs[0].Type != schema.EventLateralMovement {
		t.Fatalf("type filter: %+v", evs)
	}
	if evs := get("severity=critical"); len(evs) != 1 {
		t.Fatalf("severity filter: %d events", len(evs))
	}
	// no_heartbeat (warning), the endpoint turning red (error), the flow.
	if evs := get("severity=warning"); len(evs) != 3 {
		t.Fatalf("severity warning or worse: %d events", len(evs))
	}
	if evs := get("endpoint=" + epID); len(evs) != 2 {
		t.Fatalf("endpoint filter: %d events", len(evs))
	}
	if evs := get("since=" + url.QueryEscape(c.now.Add(time.Hour).Format(time.RFC3339))); len(evs) != 0 {
		t.Fatalf("since filter: %d events", len(evs))
	}
	if code, body := c.do(c.client(), "GET", "/api/v1/alerts?type=bogus", "", map[string]string{"Authorization": "Bearer " + tok}); code != 400 ||
		!strings.Contains(body, "known types are") {
		t.Fatalf("unknown type: %d %s", code, body)
	}
	// The endpoint page lists the lateral movement's peer with its vendor.
	cl, _ := c.login("victor")
	body := c.get(cl, "/endpoints/"+epID, http.StatusOK)
	if !strings.Contains(body, station.String()) || !strings.Contains(body, "lateral_movement") {
		t.Fatal("the endpoint page does not show the peer of its lateral-movement alert")
	}
}
