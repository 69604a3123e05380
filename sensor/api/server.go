package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Live gives the daemon's current view. *sensor.Engine satisfies it.
type Live interface {
	Endpoints() []schema.EndpointState
	AtRisk() schema.AtRiskList
}

// Server serves the API. Create it with NewServer, add routes with Handle,
// then call ServeUnix and/or ServeTLS.
type Server struct {
	backend Local
	mux     *http.ServeMux
	log     *slog.Logger
	limits  Limits
}

// SetLimits sets the connection limits and the event sink for refused
// peers; call it before serving.
func (s *Server) SetLimits(l Limits) { s.limits = l }

// NewServer returns a server answering from store, with live endpoint
// states from live (which may be nil).
func NewServer(store *history.Store, live Live, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{backend: Local{Store: store, Live: live}, mux: http.NewServeMux(), log: log}
	s.mux.HandleFunc("GET /v1/ping", s.ping)
	s.mux.HandleFunc("GET /v1/endpoints", s.endpoints)
	s.mux.HandleFunc("GET /v1/atrisk", s.atRisk)
	s.mux.HandleFunc("GET /v1/history", s.history)
	s.mux.HandleFunc("GET /v1/alerts", s.alerts)
	s.mux.HandleFunc("GET /v1/who", s.who)
	s.mux.HandleFunc("GET /v1/traffic", s.traffic)
	s.mux.HandleFunc("GET /v1/unmanaged", s.unmanaged)
	s.mux.HandleFunc("GET /v1/backup", s.backup)
	return s
}

// Handle mounts an extra route (net/http ServeMux pattern, e.g.
// "GET /v1/capture") on both the socket and the TLS listener.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// ListenUnix creates the API socket at path, readable and writable by its
// owner only (root for the daemon). A stale socket left by a dead daemon is
// replaced; a socket a live daemon answers on is not.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("api socket %s: another daemon is answering on it", path)
	}
	_ = os.Remove(path)
	// Create the socket with no permissions for group and others from the start.
	var ln net.Listener
	var err error
	withUmask(0o177, func() { ln, err = net.Listen("unix", path) })
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	return ln, nil
}

// ServeUnix serves the API on a Unix socket at path until ctx ends.
func (s *Server) ServeUnix(ctx context.Context, path string) error {
	ln, err := ListenUnix(path)
	if err != nil {
		return err
	}
	return s.ServeLocal(ctx, ln, path)
}

// ServeLocal serves the API on ln, a socket from ListenUnix at path, until
// ctx ends, then removes the socket. A daemon listens first and serves
// after, so that the socket answers as soon as it says it is ready.
func (s *Server) ServeLocal(ctx context.Context, ln net.Listener, path string) error {
	defer os.Remove(path)
	return s.Serve(ctx, newGuard(ln, nil, s.limits, s.log, "local API"))
}

// ServeTLS serves the API over mutual TLS on ln until ctx ends. cfg must
// authenticate clients: a configuration that lets a client in without a
// verified certificate is refused.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("admin API: no TLS configuration")
	}
	verifies := cfg.ClientAuth >= tls.VerifyClientCertIfGiven && cfg.ClientAuth != tls.RequireAnyClientCert
	if cfg.ClientAuth == tls.NoClientCert || (!verifies && cfg.VerifyConnection == nil && cfg.VerifyPeerCertificate == nil) {
		return errors.New("admin API: the TLS configuration does not verify client certificates; refusing to serve without mutual TLS")
	}
	if cfg.ClientAuth == tls.VerifyClientCertIfGiven && cfg.VerifyConnection == nil {
		return errors.New("admin API: the TLS configuration lets clients in without a certificate; use RequireAndVerifyClientCert")
	}
	c := cfg.Clone()
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return s.Serve(ctx, newGuard(ln, c, s.limits, s.log, "admin API"))
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	lim := s.limits
	lim.defaults()
	srv := &http.Server{
		Handler:           requireCertificate(s.mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       lim.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: %w", err)
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

type badRequest struct{ error }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var br badRequest
	if errors.As(err, &br) {
		code = http.StatusBadRequest
	} else {
		s.log.Error("api request failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: err.Error()})
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, badRequest{fmt.Errorf("parameter %s=%q: want RFC 3339", name, v)}
	}
	return t, nil
}

func queryRange(r *http.Request) (history.Range, error) {
	var rg history.Range
	var err error
	if rg.Since, err = queryTime(r, "since"); err != nil {
		return rg, err
	}
	rg.Until, err = queryTime(r, "until")
	return rg, err
}

func queryMAC(r *http.Request) (schema.MAC, error) {
	v := r.URL.Query().Get("mac")
	if v == "" {
		return schema.MAC{}, nil
	}
	m, err := schema.ParseMAC(v)
	if err != nil {
		return m, badRequest{err}
	}
	return m, nil
}

func queryTypes(r *http.Request) []schema.EventType {
	var out []schema.EventType
	for _, v := range r.URL.Query()["type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, schema.EventType(t))
			}
		}
	}
	return out
}

func queryLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest{fmt.Errorf("parameter limit=%q: want a positive number", v)}
	}
	return n, nil
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"ok": true, "next_seq": s.backend.Store.NextSeq(), "live": s.backend.Live != nil})
}

func (s *Server) endpoints(w http.ResponseWriter, r *http.Request) {
	l, err := s.backend.Endpoints(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, l)
}

func (s *Server) atRisk(w http.ResponseWriter, r *http.Request) {
	if s.backend.Live == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(apiError{Error: "no live state: this server answers from history only"})
		return
	}
	writeJSON(w, s.backend.Live.AtRisk())
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	var q history.HistoryQuery
	var err error
	if q.Range, err = queryRange(r); err == nil {
		if q.MAC, err = queryMAC(r); err == nil {
			q.Limit, err = queryLimit(r)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q.Endpoint = r.URL.Query().Get("endpoint")
	q.Types = queryTypes(r)
	if q.Endpoint == "" && q.MAC.IsZero() {
		s.fail(w, r, badRequest{errors.New("history: give endpoint=NAME|ID or mac=MAC")})
		return
	}
	evs, err := s.backend.History(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, evs)
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	var q history.AlertQuery
	var err error
	if q.Range, err = queryRange(r); err == nil {
		q.Limit, err = queryLimit(r)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q.Endpoint = r.URL.Query().Get("endpoint")
	q.Types = queryTypes(r)
	evs, err := s.backend.Alerts(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, evs)
}

func (s *Server) who(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.URL.Query().Get("ip"))
	if err != nil {
		s.fail(w, r, badRequest{fmt.Errorf("parameter ip=%q: want an IPv4 or IPv6 address", r.URL.Query().Get("ip"))})
		return
	}
	at, err := queryTime(r, "at")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if at.IsZero() {
		at = time.Now()
	}
	ans, err := s.backend.Who(r.Context(), ip, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, ans)
}

func (s *Server) traffic(w http.ResponseWriter, r *http.Request) {
	var q history.TrafficQuery
	var err error
	if q.Range, err = queryRange(r); err == nil {
		q.MAC, err = queryMAC(r)
	}
	if err == nil && q.MAC.IsZero() {
		err = badRequest{errors.New("traffic: give mac=MAC")}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.backend.Traffic(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, out)
}

func (s *Server) unmanaged(w http.ResponseWriter, r *http.Request) {
	rg, err := queryRange(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.backend.Unmanaged(r.Context(), rg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, out)
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="tapbeat-history.backup.gz"`)
	if err := s.backend.Backup(r.Context(), w); err != nil {
		// Headers are gone: abort the stream so the client sees a
		// truncated body rather than a valid-looking file.
		s.log.Error("api backup failed", "err", err)
		panic(http.ErrAbortHandler)
	}
}
