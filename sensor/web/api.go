package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		s.log.Error("console request failed", "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err.Error())
}

func (s *Server) apiOverview(w http.ResponseWriter, r *http.Request, _ *principal) {
	o, err := s.overview()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, o)
}

func (s *Server) apiEndpoints(w http.ResponseWriter, r *http.Request, _ *principal) {
	p, err := s.endpointsQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, p)
}

func (s *Server) apiEndpoint(w http.ResponseWriter, r *http.Request, _ *principal) {
	d, err := s.endpointDetail(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, d)
}

func (s *Server) apiUnmanaged(w http.ResponseWriter, r *http.Request, _ *principal) {
	rows, err := s.unmanaged(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, rows)
}

// Triage is the body of PUT /api/v1/unmanaged/{mac}.
type Triage struct {
	State   string    `json:"state"`
	Note    string    `json:"note,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

func (s *Server) apiTriage(w http.ResponseWriter, r *http.Request, p *principal) {
	var t Triage
	if err := json.NewDecoder(io.LimitReader(r.Body, 8192)).Decode(&t); err != nil {
		s.fail(w, r, badRequest{fmt.Errorf("triage: %w (want {\"state\": \"authorized\", \"note\": ..., \"expires\": RFC 3339})", err)})
		return
	}
	e, err := s.setTriage(r, p, r.PathValue("mac"), t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, e)
}

func (s *Server) setTriage(r *http.Request, p *principal, macText string, t Triage) (inventory.TriageEntry, error) {
	m, err := schema.ParseMAC(macText)
	if err != nil {
		return inventory.TriageEntry{}, badRequest{err}
	}
	st, err := inventory.ParseTriageState(t.State)
	if err != nil {
		return inventory.TriageEntry{}, badRequest{err}
	}
	now := s.o.Now()
	if !t.Expires.IsZero() && !t.Expires.After(now) {
		return inventory.TriageEntry{}, badRequest{fmt.Errorf("expires %s is in the past", t.Expires.Format(time.RFC3339))}
	}
	e := inventory.TriageEntry{MAC: m, State: st, Note: strings.TrimSpace(t.Note), Expires: t.Expires, By: p.Name, Changed: now}
	if err := s.o.Triage.Set(e); err != nil {
		if strings.Contains(err.Error(), "triage note") || strings.Contains(err.Error(), "not a station") {
			return e, badRequest{err}
		}
		return e, err
	}
	note := e.Note
	if !e.Expires.IsZero() {
		note = strings.TrimSpace(note + " (until " + e.Expires.UTC().Format(time.RFC3339) + ")")
	}
	s.audit(r, p, "triage "+string(st), m.String(), note)
	if s.o.TriageChanged != nil {
		s.o.TriageChanged()
	}
	return e, nil
}

func (s *Server) apiAlerts(w http.ResponseWriter, r *http.Request, _ *principal) {
	_, evs, err := s.alerts(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []schema.Event{}
	}
	writeJSON(w, evs)
}

func (s *Server) apiWho(w http.ResponseWriter, r *http.Request, _ *principal) {
	a, err := s.who(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, a)
}

// Vendor is the answer of /api/v1/vendors/{mac}.
type Vendor struct {
	MAC    schema.MAC `json:"mac"`
	Vendor string     `json:"vendor"`
	Local  bool       `json:"locally_administered"`
}

func (s *Server) apiVendor(w http.ResponseWriter, r *http.Request, _ *principal) {
	m, err := schema.ParseMAC(r.PathValue("mac"))
	if err != nil {
		s.fail(w, r, badRequest{err})
		return
	}
	writeJSON(w, Vendor{MAC: m, Vendor: s.o.Vendors.Lookup(m), Local: inventory.IsLocal(m)})
}

func (s *Server) enrolled() ([]pki.Entry, error) {
	if s.o.Enrolled == nil {
		return nil, nil
	}
	l, err := s.o.Enrolled()
	if err != nil {
		return nil, err
	}
	l = slices.DeleteFunc(l, func(e pki.Entry) bool { return !e.Active() })
	slices.SortFunc(l, func(a, b pki.Entry) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}

func (s *Server) apiEnrolled(w http.ResponseWriter, r *http.Request, _ *principal) {
	l, err := s.enrolled()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if l == nil {
		l = []pki.Entry{}
	}
	writeJSON(w, l)
}

// EnrollRequest asks for a certificate or its revocation (the local API's
// body too).
type EnrollRequest struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
}

func (s *Server) enroll(r *http.Request, p *principal, req EnrollRequest) (*pki.Bundle, error) {
	if err := pki.CheckHostName(req.Name); err != nil {
		return nil, badRequest{err}
	}
	if s.o.OpenAuthority == nil {
		return nil, errors.New("enrollment is not available on this console")
	}
	a, err := s.o.OpenAuthority()
	if err != nil {
		return nil, err
	}
	b, err := a.Enroll(req.Name, pki.EnrollOptions{Admin: req.Admin})
	if err != nil {
		return nil, badRequest{err}
	}
	what := "enroll"
	if req.Admin {
		what = "enroll admin"
	}
	s.audit(r, p, what, req.Name, "")
	return b, nil
}

func (s *Server) revoke(r *http.Request, p *principal, req EnrollRequest) (int, error) {
	if err := pki.CheckHostName(req.Name); err != nil {
		return 0, badRequest{err}
	}
	if s.o.OpenAuthority == nil {
		return 0, errors.New("revocation is not available on this console")
	}
	a, err := s.o.OpenAuthority()
	if err != nil {
		return 0, err
	}
	entries, err := a.Revoke(req.Name, req.Admin)
	if err != nil {
		return 0, badRequest{err}
	}
	s.audit(r, p, "revoke", req.Name, fmt.Sprintf("%d certificates", len(entries)))
	return len(entries), nil
}

func decodeEnroll(r *http.Request) (EnrollRequest, error) {
	var req EnrollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		return req, badRequest{fmt.Errorf("request: %w (want {\"name\": HOST})", err)}
	}
	return req, nil
}

func (s *Server) apiEnroll(w http.ResponseWriter, r *http.Request, p *principal) {
	req, err := decodeEnroll(r)
	if err == nil {
		var b *pki.Bundle
		if b, err = s.enroll(r, p, req); err == nil {
			writeJSON(w, b)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request, p *principal) {
	req, err := decodeEnroll(r)
	if err == nil {
		var n int
		if n, err = s.revoke(r, p, req); err == nil {
			writeJSON(w, map[string]int{"revoked": n})
			return
		}
	}
	s.fail(w, r, err)
}

// LiveEvent is what /api/v1/events sends per event: the event, plus the
// endpoint's status and the vendor of its first MAC for the live views.
type LiveEvent struct {
	schema.Event
	Alert bool `json:"alert"`
}

// apiEvents streams every stored event as a server-sent event "event".
// The data are JSON; pages insert them as text, never as markup.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request, _ *principal) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	c := s.hub.Subscribe()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "too many live connections")
		return
	}
	defer s.hub.Unsubscribe(c)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 1000\n: connected\n\n")
	fl.Flush()
	keep := time.NewTicker(20 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			_, _ = io.WriteString(w, ": keep-alive\n\n")
			fl.Flush()
		case evs, ok := <-c:
			if !ok {
				_, _ = io.WriteString(w, "event: reset\ndata: {}\n\n")
				fl.Flush()
				return
			}
			for i := range evs {
				b, err := json.Marshal(LiveEvent{Event: evs[i], Alert: evs[i].IsAlert()})
				if err != nil {
					continue
				}
				fmt.Fprintf(w, "event: event\nid: %d\ndata: %s\n\n", evs[i].Seq, b)
			}
			fl.Flush()
		}
	}
}
