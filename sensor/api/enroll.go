package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Enroller issues and revokes certificates: the organisation's enrollment
// authority (*pki.Authority) behind the daemon.
type Enroller interface {
	Enroll(name string, opts pki.EnrollOptions) (*pki.Bundle, error)
	Revoke(name string, admin bool) ([]pki.Entry, error)
}

// EnrollRequest asks for a certificate (POST /v1/enroll) or its
// revocation (POST /v1/revoke).
type EnrollRequest struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
}

// RevokeAnswer says how many certificates a revocation removed.
type RevokeAnswer struct {
	Revoked int `json:"revoked"`
}

// HandleEnrollment mounts POST /v1/enroll and POST /v1/revoke, so an
// appliance without a shell can enroll endpoints through the admin API.
// openAuthority is called per request: the authority serialises writers
// with a file lock, and the trust store it updates is followed by the
// running listener.
func (s *Server) HandleEnrollment(openAuthority func() (Enroller, error)) {
	handle := func(do func(Enroller, EnrollRequest) (any, error)) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", http.MethodPost)
				s.fail(w, r, badRequest{fmt.Errorf("%s %s: use POST", r.Method, r.URL.Path)})
				return
			}
			var req EnrollRequest
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
				s.fail(w, r, badRequest{fmt.Errorf("enrollment request: %w (want {\"name\": HOST})", err)})
				return
			}
			if err := pki.CheckHostName(req.Name); err != nil {
				s.fail(w, r, badRequest{err})
				return
			}
			a, err := openAuthority()
			if err != nil {
				s.fail(w, r, err)
				return
			}
			v, err := do(a, req)
			if err != nil {
				s.fail(w, r, badRequest{err})
				return
			}
			s.log.Info("enrollment", "path", r.URL.Path, "name", req.Name, "admin", req.Admin, "peer", r.RemoteAddr, "by", clientName(r))
			s.auditEnrollment(r, req)
			writeJSON(w, v)
		})
	}
	s.Handle("/v1/enroll", handle(func(a Enroller, req EnrollRequest) (any, error) {
		return a.Enroll(req.Name, pki.EnrollOptions{Admin: req.Admin})
	}))
	s.Handle("/v1/revoke", handle(func(a Enroller, req EnrollRequest) (any, error) {
		entries, err := a.Revoke(req.Name, req.Admin)
		if err != nil {
			return nil, err
		}
		return RevokeAnswer{Revoked: len(entries)}, nil
	}))
}

// Enroll asks the daemon for a certificate and returns its bundle.
func (c *Client) Enroll(ctx context.Context, name string, admin bool) (*pki.Bundle, error) {
	var b pki.Bundle
	if err := c.post(ctx, "/v1/enroll", EnrollRequest{Name: name, Admin: admin}, &b); err != nil {
		return nil, err
	}
	if b.Cert == "" || b.Key == "" {
		return nil, errors.New("api /v1/enroll: the answer holds no certificate")
	}
	return &b, nil
}

// Revoke asks the daemon to revoke name's certificates.
func (c *Client) Revoke(ctx context.Context, name string, admin bool) (int, error) {
	var a RevokeAnswer
	err := c.post(ctx, "/v1/revoke", EnrollRequest{Name: name, Admin: admin}, &a)
	return a.Revoked, err
}

func (c *Client) post(ctx context.Context, path string, body, v any) error {
	resp, err := c.send(ctx, http.MethodPost, path, nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("api %s: decode answer: %w", path, err)
	}
	return nil
}

// clientName names the administrator certificate of a TLS request, or
// "local socket".
// auditEnrollment records an enrollment or revocation through the API as
// an operator_change event, as the console records its own changes.
func (s *Server) auditEnrollment(r *http.Request, req EnrollRequest) {
	if s.limits.Record == nil {
		return
	}
	action := path.Base(r.URL.Path) // "enroll" or "revoke"
	if req.Admin {
		action += "-admin"
	}
	via := "certificate"
	if r.TLS == nil {
		via = "socket"
	}
	who := clientName(r)
	s.limits.Record(schema.Event{Time: time.Now(), Type: schema.EventOperatorAudit, Severity: schema.SeverityNotice,
		Reason:  fmt.Sprintf("%s %s by %s (%s)", action, req.Name, who, via),
		Details: &schema.OperatorDetails{Actor: who, Via: via, Remote: r.RemoteAddr, Action: action, Target: req.Name}})
}

func clientName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "local socket"
	}
	c := r.TLS.PeerCertificates[0]
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}
