package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// RedeemPath is the one admin API route a TLS client without a certificate
// reaches: it trades an enrollment code for a bundle.
const RedeemPath = "/v1/enroll-with-code"

// CodeRequest asks for a new enrollment code (POST /v1/enroll-codes).
type CodeRequest struct {
	Admin bool `json:"admin,omitempty"`
}

// CodeAnswer is a new enrollment code.
type CodeAnswer struct {
	Code    string    `json:"code"`
	Admin   bool      `json:"admin"`
	Expires time.Time `json:"expires"`
}

// RedeemRequest trades a code for a certificate (POST /v1/enroll-with-code).
type RedeemRequest struct {
	Name string `json:"name"`
	Code string `json:"code"`
}

// HandleEnrollmentCodes mounts POST /v1/enroll-codes, by which an
// administrator (or root on the socket) issues a one-time code, and POST
// /v1/enroll-with-code, by which whoever holds a code enrolls once without
// a certificate. dir is the authority's directory; now is the clock.
func (s *Server) HandleEnrollmentCodes(dir string, now func() time.Time) {
	s.Handle("POST /v1/enroll-codes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CodeRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			s.fail(w, r, badRequest{fmt.Errorf("code request: %w (want {\"admin\": true|false})", err)})
			return
		}
		t := now()
		code, err := pki.IssueCode(dir, req.Admin, t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("enrollment code issued", "admin", req.Admin, "peer", r.RemoteAddr, "by", clientName(r))
		writeJSON(w, CodeAnswer{Code: code, Admin: req.Admin, Expires: t.Add(pki.CodeValidity)})
	}))
	s.Handle("POST "+RedeemPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RedeemRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			s.fail(w, r, badRequest{fmt.Errorf("enrollment request: %w (want {\"name\": NAME, \"code\": CODE})", err)})
			return
		}
		if err := pki.CheckHostName(req.Name); err != nil {
			s.fail(w, r, badRequest{err})
			return
		}
		admin, err := pki.RedeemCode(dir, req.Code, now())
		if err != nil {
			s.log.Warn("enrollment code refused", "peer", r.RemoteAddr, "name", req.Name, "err", err)
			if errors.Is(err, pki.ErrBadCode) || errors.Is(err, pki.ErrCodeAttempts) {
				err = badRequest{err}
			}
			s.fail(w, r, err)
			return
		}
		a, err := pki.Open(dir)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		b, err := a.Enroll(req.Name, pki.EnrollOptions{Admin: admin})
		if err != nil {
			s.fail(w, r, badRequest{fmt.Errorf("the code was used, but enrolling %s failed: %w; ask for a new code", req.Name, err)})
			return
		}
		s.log.Info("enrolled with a code", "name", req.Name, "admin", admin, "peer", r.RemoteAddr)
		writeJSON(w, b)
	}))
}

// requireCertificate refuses every request that came over TLS without a
// verified client certificate, except a code's redemption: the admin API's
// TLS configuration lets such clients through the handshake only for that.
func requireCertificate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) == 0 && len(r.TLS.PeerCertificates) == 0 && r.URL.Path != RedeemPath {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(apiError{Error: r.URL.Path + ": the admin API needs an administrator certificate (tapbeat ... --bundle ADMIN.json)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NewCodeClient returns a client for redeeming an enrollment code at the
// admin API at baseURL, trusting the sensor whose certificate has pin.
func NewCodeClient(baseURL, pin string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("admin API address %q: want https://HOST:PORT", baseURL)
	}
	cfg, err := pki.CodeClientConfig(pin)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConns: 2, TLSHandshakeTimeout: 10 * time.Second}
	return &Client{hc: &http.Client{Transport: tr}, base: strings.TrimRight(u.String(), "/")}, nil
}

// EnrollWithCode trades code for name's bundle.
func (c *Client) EnrollWithCode(ctx context.Context, name, code string) (*pki.Bundle, error) {
	var b pki.Bundle
	if err := c.post(ctx, RedeemPath, RedeemRequest{Name: name, Code: code}, &b); err != nil {
		return nil, err
	}
	if b.Cert == "" || b.Key == "" {
		return nil, errors.New("api " + RedeemPath + ": the answer holds no certificate")
	}
	return &b, nil
}

// IssueCode asks the daemon for a one-time enrollment code.
func (c *Client) IssueCode(ctx context.Context, admin bool) (CodeAnswer, error) {
	var a CodeAnswer
	err := c.post(ctx, "/v1/enroll-codes", CodeRequest{Admin: admin}, &a)
	return a, err
}
