package web

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/access"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string
	User  *principal
	Error string
	Flash string
	Data  any
}

var pageNames = []string{"login", "error", "overview", "endpoints", "endpoint", "unmanaged", "alerts", "forensics", "enroll"}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			d := now.Sub(t).Round(time.Second)
			if d < 0 {
				d = 0
			}
			return d.String() + " ago"
		},
		"bytes":    func(v uint64) string { return humanBytes(float64(v)) },
		"join":     strings.Join,
		"add":      func(a, b int) int { return a + b },
		"statuses": func() []schema.Status { return statusOrder },
		"triageStates": func() []inventory.TriageState {
			return []inventory.TriageState{inventory.TriageNew, inventory.TriageAuthorized, inventory.TriageInvestigating, inventory.TriageBlocked}
		},
		"types":    schema.TypeNames,
		"sevNames": func() []string { return []string{"critical", "error", "warning", "notice", "info"} },
		"details": func(d schema.Details) string {
			if d == nil {
				return ""
			}
			b, _ := json.Marshal(d)
			return string(b)
		},
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/templates/layout.html", "assets/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var statusOrder = []schema.Status{schema.StatusMissing, schema.StatusRed, schema.StatusYellow, schema.StatusUnknown,
	schema.StatusOffline, schema.StatusGreen}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, code int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := s.tmpl[name].ExecuteTemplate(w, "layout", d); err != nil {
		s.log.Error("render console page", "page", name, "path", r.URL.Path, "err", err)
	}
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, p *principal, err error) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		s.log.Error("console page failed", "path", r.URL.Path, "err", err)
	}
	s.render(w, r, "error", code, pageData{Title: http.StatusText(code), User: p, Error: err.Error()})
}

// loginView is the login page's data.
type loginView struct{ Next, Name string }

func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.Contains(n, `\`) {
		return "/"
	}
	return n
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, _ *principal) {
	s.render(w, r, "login", http.StatusOK, pageData{Title: "Log in", Data: loginView{Next: safeNext(r.URL.Query().Get("next"))}})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, _ *principal) {
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	name := r.PostFormValue("name")
	password := r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	// A login form posted from another site is refused (login CSRF).
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		s.render(w, r, "login", http.StatusForbidden, pageData{Title: "Log in", Error: errOrigin.Error(), Data: loginView{Next: next}})
		return
	}
	now := s.o.Now()
	src := sourceOf(r)
	if ok, wait := s.limits.allowed(src, name, now); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.render(w, r, "login", http.StatusTooManyRequests, pageData{Title: "Log in",
			Error: fmt.Sprintf("too many failed logins: try again in %d s", int(wait.Seconds())+1), Data: loginView{Next: next, Name: name}})
		return
	}
	u, err := s.o.Access.Authenticate(name, []byte(password))
	if err != nil {
		s.limits.failed(src, name, now)
		s.log.Warn("console login failed", "name", name, "remote", r.RemoteAddr, "err", err)
		msg := access.ErrBadPassword.Error()
		s.render(w, r, "login", http.StatusUnauthorized, pageData{Title: "Log in", Error: msg, Data: loginView{Next: next, Name: name}})
		return
	}
	ss := s.sessions.create(u.Name, now)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: ss.id, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionLifetime.Seconds())})
	s.log.Info("console login", "name", u.Name, "role", u.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.Via == viaSession {
		if err := checkChange(r, p); err != nil {
			s.render(w, r, "error", http.StatusForbidden, pageData{Title: "Forbidden", User: p, Error: err.Error()})
			return
		}
		s.sessions.drop(p.sess.id)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// overviewView is the overview page's data.
type overviewView struct {
	Overview
	Statuses []statusCount
	Chart    template.HTML
}

type statusCount struct {
	Status schema.Status
	N      int
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, p *principal) {
	o, err := s.overview()
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	v := overviewView{Overview: o}
	for _, st := range statusOrder {
		v.Statuses = append(v.Statuses, statusCount{st, o.Counts[string(st)]})
	}
	bars := make([]bar, len(o.AlertsByHour))
	for i, h := range o.AlertsByHour {
		bars[i] = bar{Label: h.Hour.UTC().Format("15:04"), Value: float64(h.Alerts), Class: "alerts"}
	}
	v.Chart = barChart("Alerts per hour, last 24 h (UTC)", bars, 720, 120)
	s.render(w, r, "overview", http.StatusOK, pageData{Title: "Overview", Nav: "overview", User: p, Data: v})
}

// endpointsView is the endpoints page's data.
type endpointsView struct {
	EndpointPage
	Params url.Values
	Now    time.Time
}

// Columns are the sortable columns, in table order.
func (v endpointsView) Columns() []string {
	return []string{"status", "name", "health", "last_heartbeat", "id"}
}

// SortURL links to the table sorted by col (flipping the order if it is
// sorted by col already).
func (v endpointsView) SortURL(col string) string {
	q := cloneValues(v.Params)
	q.Set("sort", col)
	q.Del("desc")
	if v.Sort == col && !v.Desc {
		q.Set("desc", "1")
	}
	q.Del("page")
	return "?" + q.Encode()
}

// Arrow marks the sorted column.
func (v endpointsView) Arrow(col string) string {
	switch {
	case v.Sort != col:
		return ""
	case v.Desc:
		return " ▼"
	}
	return " ▲"
}

// PageURL links to the page delta pages away.
func (v endpointsView) PageURL(delta int) string {
	q := cloneValues(v.Params)
	q.Set("page", strconv.Itoa(v.Page+delta))
	return "?" + q.Encode()
}

func cloneValues(v url.Values) url.Values {
	q := url.Values{}
	for k, vs := range v {
		q[k] = append([]string(nil), vs...)
	}
	return q
}

func (s *Server) endpointsPage(w http.ResponseWriter, r *http.Request, p *principal) {
	pg, err := s.endpointsQuery(r.URL.Query())
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	params := url.Values{}
	for _, k := range []string{"q", "status", "sort", "desc", "per"} {
		if v := r.URL.Query().Get(k); v != "" {
			params.Set(k, v)
		}
	}
	s.render(w, r, "endpoints", http.StatusOK, pageData{Title: "Endpoints", Nav: "endpoints", User: p,
		Data: endpointsView{EndpointPage: pg, Params: params, Now: s.o.Now()}})
}

// endpointView is one endpoint's page data.
type endpointView struct {
	EndpointDetail
	Timeline template.HTML
	Traffic  template.HTML
	Now      time.Time
}

func (s *Server) endpointPage(w http.ResponseWriter, r *http.Request, p *principal) {
	d, err := s.endpointDetail(r.PathValue("id"))
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	v := endpointView{EndpointDetail: d, Now: s.o.Now()}
	spans := make([]span, len(d.Timeline))
	for i, sp := range d.Timeline {
		spans[i] = span{From: sp.From, To: sp.To, Class: "st-" + string(sp.Status),
			Label: fmt.Sprintf("%s from %s to %s", sp.Status, sp.From.UTC().Format("15:04:05"), sp.To.UTC().Format("15:04:05"))}
	}
	v.Timeline = timeline("Status, last 24 h of "+d.Endpoint.Name, spans, d.From, d.To, 720, 18)
	pts := make([]point, len(d.Traffic))
	for i, t := range d.Traffic {
		pts[i] = point{T: t.Minute, V: float64(t.Bytes)}
	}
	v.Traffic = lineChart("Bytes per minute, last 24 h of "+d.Endpoint.Name, pts, d.From, d.To, 720, 100, "/min")
	s.render(w, r, "endpoint", http.StatusOK, pageData{Title: d.Endpoint.Name, Nav: "endpoints", User: p, Data: v})
}

// unmanagedView is the unmanaged page's data.
type unmanagedView struct {
	Rows []UnmanagedRow
	Now  time.Time
}

func (s *Server) unmanagedPage(w http.ResponseWriter, r *http.Request, p *principal) {
	rows, err := s.unmanaged(r.URL.Query())
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	s.render(w, r, "unmanaged", http.StatusOK, pageData{Title: "Unmanaged devices", Nav: "unmanaged", User: p,
		Flash: r.URL.Query().Get("done"), Data: unmanagedView{Rows: rows, Now: s.o.Now()}})
}

func (s *Server) triageForm(w http.ResponseWriter, r *http.Request, p *principal) {
	t := Triage{State: r.PostFormValue("state"), Note: r.PostFormValue("note")}
	if v := r.PostFormValue("expires"); v != "" {
		exp, err := queryTime(url.Values{"expires": {v}}, "expires")
		if err != nil {
			s.pageError(w, r, p, err)
			return
		}
		t.Expires = exp
	}
	e, err := s.setTriage(r, p, r.PathValue("mac"), t)
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/unmanaged?done="+url.QueryEscape(e.MAC.String()+" is now "+string(e.State)), http.StatusSeeOther)
}

// alertsView is the alerts page's data.
type alertsView struct {
	Filter AlertFilter
	Alerts []schema.Event
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, p *principal) {
	f, evs, err := s.alerts(r.URL.Query())
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	s.render(w, r, "alerts", http.StatusOK, pageData{Title: "Alerts", Nav: "alerts", User: p, Data: alertsView{Filter: f, Alerts: evs}})
}

// forensicsView is the forensics page's data.
type forensicsView struct {
	IP, At string
	Answer any
}

func (s *Server) forensicsPage(w http.ResponseWriter, r *http.Request, p *principal) {
	q := r.URL.Query()
	v := forensicsView{IP: q.Get("ip"), At: q.Get("at")}
	d := pageData{Title: "Forensics", Nav: "forensics", User: p}
	if v.IP != "" {
		a, err := s.who(q)
		if err != nil {
			d.Error = err.Error()
		} else {
			v.Answer = a
		}
	}
	d.Data = v
	s.render(w, r, "forensics", http.StatusOK, d)
}

// enrollView is the enroll page's data.
type enrollView struct {
	Enrolled any
	Confirm  string // name awaiting revocation confirmation
}

func (s *Server) enrollPage(w http.ResponseWriter, r *http.Request, p *principal) {
	l, err := s.enrolled()
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	s.render(w, r, "enroll", http.StatusOK, pageData{Title: "Enroll and revoke", Nav: "enroll", User: p,
		Flash: r.URL.Query().Get("done"), Data: enrollView{Enrolled: l, Confirm: r.URL.Query().Get("revoke")}})
}

func (s *Server) enrollForm(w http.ResponseWriter, r *http.Request, p *principal) {
	req := EnrollRequest{Name: strings.TrimSpace(r.PostFormValue("name"))}
	b, err := s.enroll(r, p, req)
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+req.Name+`.bundle.json"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(data, '\n'))
}

func (s *Server) revokeForm(w http.ResponseWriter, r *http.Request, p *principal) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if confirm := strings.TrimSpace(r.PostFormValue("confirm")); confirm != name {
		// Ask again: the operator types the name to confirm.
		http.Redirect(w, r, "/enroll?revoke="+url.QueryEscape(name), http.StatusSeeOther)
		return
	}
	n, err := s.revoke(r, p, EnrollRequest{Name: name})
	if err != nil {
		s.pageError(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/enroll?done="+url.QueryEscape(fmt.Sprintf("%s revoked (%d certificates)", name, n)), http.StatusSeeOther)
}
