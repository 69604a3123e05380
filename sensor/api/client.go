package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Client calls the API of a daemon, over its Unix socket or over mutual TLS.
type Client struct {
	hc   *http.Client
	base string
}

var _ Backend = (*Client)(nil)

// NewUnixClient returns a client for the daemon's socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 2,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://tapbeat"}
}

// NewTLSClient returns a client for the admin API at baseURL
// ("https://host:port") presenting the certificate in cfg.
func NewTLSClient(baseURL string, cfg *tls.Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("admin API address %q: want https://HOST:PORT", baseURL)
	}
	if cfg == nil || len(cfg.Certificates) == 0 && cfg.GetClientCertificate == nil {
		return nil, errors.New("admin API: the TLS configuration has no client certificate")
	}
	tr := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true, MaxIdleConns: 2, TLSHandshakeTimeout: 10 * time.Second}
	return &Client{hc: &http.Client{Transport: tr}, base: strings.TrimRight(u.String(), "/")}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	return c.send(ctx, http.MethodGet, path, q, nil)
}

// send makes one request; a body is sent as JSON.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if body != nil && err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e apiError
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("api %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

func (c *Client) get(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.do(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("api %s: decode answer: %w", path, err)
	}
	return nil
}

// Ping checks that a daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	var v map[string]any
	return c.get(ctx, "/v1/ping", nil, &v)
}

func setTime(q url.Values, name string, t time.Time) {
	if !t.IsZero() {
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}

func rangeValues(r history.Range) url.Values {
	q := url.Values{}
	setTime(q, "since", r.Since)
	setTime(q, "until", r.Until)
	return q
}

func setTypes(q url.Values, types []schema.EventType) {
	if len(types) > 0 {
		s := make([]string, len(types))
		for i, t := range types {
			s[i] = string(t)
		}
		q.Set("type", strings.Join(s, ","))
	}
}

// Endpoints implements Backend.
func (c *Client) Endpoints(ctx context.Context) (EndpointList, error) {
	var l EndpointList
	err := c.get(ctx, "/v1/endpoints", nil, &l)
	return l, err
}

// AtRisk returns the daemon's current at-risk list.
func (c *Client) AtRisk(ctx context.Context) (schema.AtRiskList, error) {
	var l schema.AtRiskList
	err := c.get(ctx, "/v1/atrisk", nil, &l)
	return l, err
}

// History implements Backend.
func (c *Client) History(ctx context.Context, hq history.HistoryQuery) ([]schema.Event, error) {
	q := rangeValues(hq.Range)
	if hq.Endpoint != "" {
		q.Set("endpoint", hq.Endpoint)
	} else if !hq.MAC.IsZero() {
		q.Set("mac", hq.MAC.String())
	}
	setTypes(q, hq.Types)
	if hq.Limit > 0 {
		q.Set("limit", strconv.Itoa(hq.Limit))
	}
	var out []schema.Event
	err := c.get(ctx, "/v1/history", q, &out)
	return out, err
}

// Alerts implements Backend.
func (c *Client) Alerts(ctx context.Context, aq history.AlertQuery) ([]schema.Event, error) {
	q := rangeValues(aq.Range)
	if aq.Endpoint != "" {
		q.Set("endpoint", aq.Endpoint)
	}
	setTypes(q, aq.Types)
	if aq.Limit > 0 {
		q.Set("limit", strconv.Itoa(aq.Limit))
	}
	var out []schema.Event
	err := c.get(ctx, "/v1/alerts", q, &out)
	return out, err
}

// Who implements Backend.
func (c *Client) Who(ctx context.Context, ip netip.Addr, at time.Time) (history.WhoAnswer, error) {
	q := url.Values{"ip": {ip.String()}}
	setTime(q, "at", at)
	var ans history.WhoAnswer
	err := c.get(ctx, "/v1/who", q, &ans)
	return ans, err
}

// Traffic implements Backend.
func (c *Client) Traffic(ctx context.Context, tq history.TrafficQuery) ([]history.TrafficMinute, error) {
	q := rangeValues(tq.Range)
	q.Set("mac", tq.MAC.String())
	var out []history.TrafficMinute
	err := c.get(ctx, "/v1/traffic", q, &out)
	return out, err
}

// Unmanaged implements Backend.
func (c *Client) Unmanaged(ctx context.Context, r history.Range) ([]history.Station, error) {
	var out []history.Station
	err := c.get(ctx, "/v1/unmanaged", rangeValues(r), &out)
	return out, err
}

// Backup implements Backend: it streams the daemon's online backup to w.
func (c *Client) Backup(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, "/v1/backup", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("backup stream: %w", err)
	}
	return nil
}
