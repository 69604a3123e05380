package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tapbeat/tapbeat/sensor/access"
)

// Ways a principal authenticated.
const (
	viaSession     = "session"
	viaToken       = "token"
	viaCertificate = "certificate"
)

// principal is who makes a request.
type principal struct {
	Name string
	Role access.Role
	Via  string
	sess *session // set for a session
}

func (p *principal) canChange() bool { return p != nil && p.Role.CanChange() }

// CSRF is the session's token for forms and the X-CSRF-Token header.
func (p *principal) CSRF() string {
	if p == nil || p.sess == nil {
		return ""
	}
	return p.sess.csrf
}

// SessionCookie names the session cookie. The __Host- prefix makes browsers
// accept it only with Secure, Path=/ and no Domain.
const SessionCookie = "__Host-tapbeat"

// Session lifetimes.
const (
	sessionIdle     = time.Hour
	sessionLifetime = 12 * time.Hour
	maxSessions     = 10000
)

type session struct {
	id      string
	user    string
	csrf    string
	created time.Time
	seen    time.Time
}

// sessions are kept in memory: a restart of the sensor logs everyone out.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create(user string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.expire(now)
	}
	if len(s.m) >= maxSessions { // still full: drop the oldest
		var oldest *session
		for _, v := range s.m {
			if oldest == nil || v.seen.Before(oldest.seen) {
				oldest = v
			}
		}
		delete(s.m, oldest.id)
	}
	ss := &session{id: randomToken(), user: user, csrf: randomToken(), created: now, seen: now}
	s.m[ss.id] = ss
	return ss
}

func (s *sessions) expire(now time.Time) {
	for k, v := range s.m {
		if now.Sub(v.seen) > sessionIdle || now.Sub(v.created) > sessionLifetime {
			delete(s.m, k)
		}
	}
}

func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if now.Sub(ss.seen) > sessionIdle || now.Sub(ss.created) > sessionLifetime {
		delete(s.m, id)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// loginLimits rate-limits failed logins per source address and per account:
// a burst of 5 failures, then one attempt per 12 s.
type loginLimits struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

const (
	loginBurst  = 5
	loginRefill = 12 * time.Second
	maxLimiters = 50000
)

func (l *loginLimits) limiter(key string, now time.Time) *rate.Limiter {
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= maxLimiters {
			for k, v := range l.m { // drop limiters that are full again
				if v.TokensAt(now) >= loginBurst {
					delete(l.m, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(loginRefill), loginBurst)
		l.m[key] = lim
	}
	return lim
}

// allowed reports whether an attempt from source for account may be
// checked now, and if not how long to wait.
func (l *loginLimits) allowed(source, account string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range []string{"src:" + source, "acct:" + account} {
		lim := l.limiter(k, now)
		if lim.TokensAt(now) < 1 {
			r := lim.ReserveN(now, 1)
			wait = max(wait, r.DelayFrom(now))
			r.CancelAt(now)
		}
	}
	return wait == 0, wait
}

// failed counts a failed attempt against source and account.
func (l *loginLimits) failed(source, account string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limiter("src:"+source, now).AllowN(now, 1)
	l.limiter("acct:"+account, now).AllowN(now, 1)
}

func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

var errCSRF = errors.New("missing or wrong CSRF token: reload the page and try again")
var errOrigin = errors.New("request from another site refused (Origin does not match)")

// checkChange guards a request that changes something: a browser's Origin
// (or Referer) must be this server, and a session must present its CSRF
// token in the X-CSRF-Token header or the csrf form field.
func checkChange(r *http.Request, p *principal) error {
	want := "https://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		if o != want {
			return errOrigin
		}
	} else if ref := r.Header.Get("Referer"); ref != "" && !strings.HasPrefix(ref, want+"/") {
		return errOrigin
	}
	if p.Via != viaSession {
		return nil
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.sess.csrf)) != 1 {
		return errCSRF
	}
	return nil
}
