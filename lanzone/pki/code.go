package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Enrollment codes let someone without a certificate enroll once: the
// appliance shows one on its console at first boot so the first
// administrator can enroll from a workstation, and administrators issue
// more. A code is 100 random bits, single-use and valid for CodeValidity;
// only its SHA-256 is kept, in CodeFile. Wrong codes are counted: after
// CodeFailures of them within CodeFailureWindow every attempt is refused
// until the window has passed, so guessing gets nowhere.
const (
	CodeFile          = "enroll-codes.json"
	CodeValidity      = time.Hour
	CodeFailures      = 5
	CodeFailureWindow = time.Minute
)

var (
	// ErrBadCode is a code that is unknown, already used or expired.
	ErrBadCode = errors.New("enrollment code unknown, already used or expired: ask an administrator for a new one")
	// ErrCodeAttempts is a redemption refused because of recent wrong codes.
	ErrCodeAttempts = errors.New("too many wrong enrollment codes in the last minute: wait a minute and try again")
	// ErrAdminExists refuses a first-administrator code once one exists.
	ErrAdminExists = errors.New("an administrator is already enrolled: codes are now issued by administrators (tapbeat enroll-code --server URL --bundle ADMIN.json)")
)

type codeRecord struct {
	Hash    string    `json:"sha256"`
	Admin   bool      `json:"admin"`
	Expires time.Time `json:"expires"`
}

type codeState struct {
	Codes    []codeRecord `json:"codes"`
	Failures []time.Time  `json:"failures,omitempty"`
}

// IssueCode adds a one-time code to dir's authority and returns it; admin
// says whether it enrolls an administrator or an endpoint.
func IssueCode(dir string, admin bool, now time.Time) (string, error) {
	unlock, err := lock(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	return issueCode(dir, admin, now)
}

// IssueFirstAdminCode issues an administrator code only while dir's trust
// store holds no active administrator: the code a new appliance shows.
func IssueFirstAdminCode(dir string, now time.Time) (string, error) {
	unlock, err := lock(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	ts, err := OpenTrustStore(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ts.Entries() {
		if e.Admin && e.Active() {
			return "", ErrAdminExists
		}
	}
	return issueCode(dir, true, now)
}

func issueCode(dir string, admin bool, now time.Time) (string, error) {
	st, err := readCodes(dir)
	if err != nil {
		return "", err
	}
	raw := make([]byte, 20) // 100 bits after base32 truncation to 20 characters
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("enrollment code: %w", err)
	}
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)[:20]
	code := s[0:5] + "-" + s[5:10] + "-" + s[10:15] + "-" + s[15:20]
	st.Codes = append(liveCodes(st.Codes, now), codeRecord{Hash: hashCode(code), Admin: admin, Expires: now.Add(CodeValidity)})
	return code, writeCodes(dir, st)
}

// RedeemCode uses up code and says whether it enrolls an administrator.
// Wrong codes count towards the limit on guesses.
func RedeemCode(dir, code string, now time.Time) (admin bool, err error) {
	unlock, err := lock(dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	st, err := readCodes(dir)
	if err != nil {
		return false, err
	}
	recent := st.Failures[:0]
	for _, f := range st.Failures {
		if now.Sub(f) < CodeFailureWindow {
			recent = append(recent, f)
		}
	}
	st.Failures = recent
	if len(st.Failures) >= CodeFailures {
		return false, ErrCodeAttempts
	}
	h := hashCode(code)
	st.Codes = liveCodes(st.Codes, now)
	for i, c := range st.Codes {
		if subtle.ConstantTimeCompare([]byte(c.Hash), []byte(h)) == 1 {
			st.Codes = append(st.Codes[:i], st.Codes[i+1:]...)
			if err := writeCodes(dir, st); err != nil {
				return false, err
			}
			return c.Admin, nil
		}
	}
	st.Failures = append(st.Failures, now)
	if err := writeCodes(dir, st); err != nil {
		return false, err
	}
	return false, ErrBadCode
}

// hashCode hashes a code as typed, ignoring case, spaces and dashes.
func hashCode(code string) string {
	norm := strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, code)
	sum := sha256.Sum256([]byte(norm))
	return hex.EncodeToString(sum[:])
}

func liveCodes(codes []codeRecord, now time.Time) []codeRecord {
	live := codes[:0]
	for _, c := range codes {
		if now.Before(c.Expires) {
			live = append(live, c)
		}
	}
	return live
}

func readCodes(dir string) (codeState, error) {
	var st codeState
	raw, err := os.ReadFile(filepath.Join(dir, CodeFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("enrollment codes: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("enrollment codes %s: %w (delete the file to void every code)", filepath.Join(dir, CodeFile), err)
	}
	return st, nil
}

func writeCodes(dir string, st codeState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, CodeFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("enrollment codes: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("enrollment codes: %w", err)
	}
	return nil
}

// AdminServerConfigWithCodes is AdminServerConfig that also lets clients
// without a certificate finish the handshake, so someone holding an
// enrollment code can redeem it. The admin API must then refuse such
// clients everything but redeeming a code (api.Server does).
func AdminServerConfigWithCodes(dir string) (*tls.Config, error) {
	cfg, err := AdminServerConfig(dir)
	if err != nil {
		return nil, err
	}
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return verify(cs)
	}
	return cfg, nil
}

// CodeClientConfig is the TLS configuration of a client redeeming an
// enrollment code: it has no certificate yet, and accepts the sensor only
// if its public key matches pin (the "sha256/BASE64" the appliance shows).
func CodeClientConfig(pin string) (*tls.Config, error) {
	if !strings.HasPrefix(pin, "sha256/") || len(pin) != len("sha256/")+44 {
		return nil, fmt.Errorf("pin %q: want sha256/ and 44 base64 characters, as the sensor shows it", pin)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("sensor presented no certificate")
			}
			if got := Pin(cs.PeerCertificates[0]); got != pin {
				return fmt.Errorf("sensor certificate pin %s does not match %s: this is not the sensor whose pin you were given", got, pin)
			}
			return nil
		},
	}, nil
}
