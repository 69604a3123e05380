package web

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/access"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

//go:embed assets
var assets embed.FS

// Live is the running daemon's view (*sensor.Engine satisfies it).
type Live interface {
	Endpoints() []schema.EndpointState
	StatusCounts() map[schema.Status]int
	Unmanaged() []schema.Station
}

// History answers the forensic queries (*history.Store satisfies it).
type History interface {
	History(q history.HistoryQuery) ([]schema.Event, error)
	Alerts(q history.AlertQuery) ([]schema.Event, error)
	Who(ip netip.Addr, at time.Time) (history.WhoAnswer, error)
	Traffic(q history.TrafficQuery) ([]history.TrafficMinute, error)
	Unmanaged(r history.Range) ([]history.Station, error)
}

// Enroller issues and revokes certificates (*pki.Authority).
type Enroller interface {
	Enroll(name string, opts pki.EnrollOptions) (*pki.Bundle, error)
	Revoke(name string, admin bool) ([]pki.Entry, error)
}

// SensorHealth is what the overview shows of the sensor itself.
type SensorHealth struct {
	Capture      []schema.CaptureHealth `json:"capture"`
	Connected    int                    `json:"lanzone_connected"`
	LANZone      []string               `json:"lanzone_listen"`
	HistoryBytes uint64                 `json:"history_bytes"`
	DiskFree     uint64                 `json:"disk_free_bytes"`
	DiskTotal    uint64                 `json:"disk_total_bytes"`
}

// Options configure a console.
type Options struct {
	Live    Live
	History History
	Access  *access.Store
	Triage  *inventory.Triage
	Vendors *inventory.Vendors
	// OpenAuthority opens the enrollment authority per request; nil
	// disables enrollment.
	OpenAuthority func() (Enroller, error)
	// Enrolled lists the trust store's active entries; may be nil.
	Enrolled func() ([]pki.Entry, error)
	// Health reports capture, LAN zone and disk; may be nil.
	Health func() SensorHealth
	// Record numbers and stores an operator_change event.
	Record func(schema.Event)
	// TriageChanged is called after the triage list changed, so the
	// correlator's list of authorized stations follows.
	TriageChanged func()
	// API serves the forensic and enrollment routes of the local API; the
	// console mounts it under /api/v1 (e.g. /api/v1/history).
	API http.Handler
	// AdminVerifier, when set, admits administrator certificates.
	AdminVerifier func(tls.ConnectionState) (pki.Entry, error)
	// Now is the clock (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the console's HTTP handler.
type Server struct {
	o        Options
	log      *slog.Logger
	mux      *http.ServeMux
	tmpl     map[string]*template.Template
	sessions sessions
	limits   loginLimits
	hub      *Hub
}

// New returns a console. Publish feeds it events for live updates.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Vendors == nil {
		o.Vendors = inventory.Load()
	}
	if o.Record == nil {
		o.Record = func(schema.Event) {}
	}
	if o.Live == nil || o.History == nil || o.Access == nil || o.Triage == nil {
		return nil, errors.New("web: Live, History, Access and Triage are required")
	}
	s := &Server{o: o, log: o.Logger, mux: http.NewServeMux(), hub: NewHub(),
		sessions: sessions{m: map[string]*session{}}, limits: loginLimits{m: map[string]*rate.Limiter{}}}
	var err error
	if s.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "assets/static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FS(static))))
	for _, rt := range s.routes() {
		s.mount(rt)
	}
	return s, nil
}

// Publish hands stored events to live views (alerts page, endpoint
// statuses). It never blocks.
func (s *Server) Publish(evs []schema.Event) { s.hub.Publish(evs) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	s.mux.ServeHTTP(w, r)
}

func staticHandler(fsys http.FileSystem) http.Handler {
	fh := http.FileServer(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fh.ServeHTTP(w, r)
	})
}

// authenticate finds who makes the request: certificate, token, session.
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && s.o.AdminVerifier != nil {
		e, err := s.o.AdminVerifier(*r.TLS)
		if err != nil {
			return nil, err
		}
		return &principal{Name: e.Name, Role: access.RoleAdmin, Via: viaCertificate}, nil
	}
	if a := r.Header.Get("Authorization"); a != "" {
		tok, ok := strings.CutPrefix(a, "Bearer ")
		if !ok {
			return nil, errors.New("authorization header: want Bearer TOKEN")
		}
		t, err := s.o.Access.CheckToken(strings.TrimSpace(tok))
		if err != nil {
			return nil, err
		}
		return &principal{Name: t.Name, Role: t.Role, Via: viaToken}, nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, nil
	}
	ss := s.sessions.get(c.Value, s.o.Now())
	if ss == nil {
		return nil, nil
	}
	// The account's current role applies; a removed account is logged out.
	u, err := s.o.Access.Lookup(ss.user)
	if err != nil {
		s.sessions.drop(ss.id)
		return nil, nil
	}
	return &principal{Name: u.Name, Role: u.Role, Via: viaSession, sess: ss}, nil
}

// mount registers a route with its access rule.
func (s *Server) mount(rt route) {
	s.mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
		if rt.Public {
			rt.h(w, r, nil)
			return
		}
		p, err := s.authenticate(r)
		if err != nil {
			s.deny(w, r, rt, http.StatusUnauthorized, err.Error())
			return
		}
		if p == nil {
			if rt.Page && r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.deny(w, r, rt, http.StatusUnauthorized, "log in, or send an API token (Authorization: Bearer TOKEN) or an administrator certificate")
			return
		}
		if rt.Change {
			if !p.canChange() {
				s.deny(w, r, rt, http.StatusForbidden, fmt.Sprintf("%s is a %s: only admins may change anything", p.Name, p.Role))
				return
			}
			if err := checkChange(r, p); err != nil {
				s.deny(w, r, rt, http.StatusForbidden, err.Error())
				return
			}
		}
		rt.h(w, r, p)
	})
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request, rt route, code int, msg string) {
	if rt.Page {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		_ = s.tmpl["error"].ExecuteTemplate(w, "layout", pageData{Title: http.StatusText(code), Error: msg})
		return
	}
	writeError(w, code, msg)
}

// audit records an operator change.
func (s *Server) audit(r *http.Request, p *principal, action, target, note string) {
	s.o.Record(schema.Event{Time: s.o.Now(), Type: schema.EventOperatorAudit, Severity: schema.SeverityNotice,
		Reason:  fmt.Sprintf("%s %s by %s (%s)", action, target, p.Name, p.Via),
		Details: &schema.OperatorDetails{Actor: p.Name, Via: p.Via, Remote: r.RemoteAddr, Action: action, Target: target, Note: note}})
	s.log.Info("operator change", "action", action, "target", target, "by", p.Name, "via", p.Via, "remote", r.RemoteAddr)
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// Serve serves the console over TLS on ln until ctx ends. cfg must hold
// the server certificate; client certificates are asked for but optional.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cfg *tls.Config) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			s.hub.Close()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.Serve(tls.NewListener(ln, cfg))
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("console: %w", err)
}
