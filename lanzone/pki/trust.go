package pki

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Entry is one certificate the trust store holds (or held, if revoked).
type Entry struct {
	Fingerprint Fingerprint `json:"-"`
	ID          string      `json:"endpoint_id"` // certificate CN
	Name        string      `json:"name"`        // DNS SAN
	Org         string      `json:"org"`         // certificate O
	Admin       bool        `json:"admin,omitempty"`
	NotAfter    time.Time   `json:"not_after"`
	Enrolled    time.Time   `json:"enrolled"`
	Revoked     time.Time   `json:"revoked,omitzero"`
}

// Active reports whether the entry is enrolled and not revoked.
func (e *Entry) Active() bool { return e.Revoked.IsZero() }

// record is one line of the journal.
type record struct {
	Op       string    `json:"op"` // "add" or "revoke"
	FP       string    `json:"fp"`
	ID       string    `json:"id,omitempty"`
	Name     string    `json:"name,omitempty"`
	Org      string    `json:"org,omitempty"`
	Admin    bool      `json:"admin,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	At       time.Time `json:"at"`
}

// TrustStore is the set of client certificates the sensor accepts, keyed by
// the SHA-256 of the certificate, loaded from the append-only journal
// DIR/trust.log. Lookups are O(1) and safe for concurrent use; Refresh picks
// up what other processes (enroll, revoke) appended since.
type TrustStore struct {
	path string

	mu      sync.RWMutex
	entries map[Fingerprint]*Entry
	offset  int64
	lines   int
}

// OpenTrustStore loads dir's trust store.
func OpenTrustStore(dir string) (*TrustStore, error) {
	t := &TrustStore{path: filepath.Join(dir, TrustFile), entries: map[Fingerprint]*Entry{}}
	if _, err := t.Refresh(); err != nil {
		return nil, err
	}
	return t, nil
}

// Lookup returns the entry for a certificate fingerprint.
func (t *TrustStore) Lookup(fp Fingerprint) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[fp]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Entries returns every entry, revoked ones included, ordered by name then
// enrollment time.
func (t *TrustStore) Entries() []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, *e)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Enrolled.Before(out[j].Enrolled)
	})
	return out
}

// Len returns how many active entries the store holds.
func (t *TrustStore) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, e := range t.entries {
		if e.Active() {
			n++
		}
	}
	return n
}

// Refresh reads the journal lines appended since the last call and returns
// the entries they revoked. A line still being written is left for the next
// call. A malformed line is an error naming it; entries already loaded stay.
func (t *TrustStore) Refresh() ([]Entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := os.Open(t.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open trust store: %s is missing: run `tapbeat init` first", t.path)
		}
		return nil, fmt.Errorf("open trust store: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	if st.Size() < t.offset {
		// Replaced by a shorter file: start over.
		t.entries, t.offset, t.lines = map[Fingerprint]*Entry{}, 0, 0
	}
	if st.Size() == t.offset {
		return nil, nil
	}
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	r := bufio.NewReaderSize(f, 256<<10)
	var revoked []Entry
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return revoked, fmt.Errorf("trust store %s line %d: longer than 256 KiB: the file is damaged, restore it from a backup", t.path, t.lines+1)
		}
		if err != nil { // io.EOF: an incomplete line waits for the next call
			break
		}
		t.lines++
		var rec record
		if err := json.Unmarshal(bytes.TrimSpace(line), &rec); err != nil {
			return revoked, fmt.Errorf("trust store %s line %d: %v: the file is damaged, restore it from a backup or remove the line", t.path, t.lines, err)
		}
		fp, err := ParseFingerprint(rec.FP)
		if err != nil {
			return revoked, fmt.Errorf("trust store %s line %d: %w", t.path, t.lines, err)
		}
		t.offset += int64(len(line))
		switch rec.Op {
		case "add":
			t.entries[fp] = &Entry{Fingerprint: fp, ID: rec.ID, Name: rec.Name, Org: rec.Org, Admin: rec.Admin, NotAfter: rec.NotAfter, Enrolled: rec.At}
		case "revoke":
			if e, ok := t.entries[fp]; ok && e.Active() {
				e.Revoked = rec.At
				revoked = append(revoked, *e)
			}
		default:
			return revoked, fmt.Errorf("trust store %s line %d: unknown operation %q", t.path, t.lines, rec.Op)
		}
	}
	return revoked, nil
}

// appendRecords appends records to the journal in one write and syncs it.
// The caller holds the directory lock.
func appendRecords(dir string, recs []record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fmt.Errorf("encode trust record: %w", err)
		}
	}
	p := filepath.Join(dir, TrustFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open trust store: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return f.Close()
}

// EnrollOptions tune what Enroll issues.
type EnrollOptions struct {
	// Admin issues an administrator certificate (accepted by the admin API
	// only) instead of an endpoint certificate (accepted by the LAN zone only).
	Admin bool
	// NotBefore and NotAfter override the validity (default: now, now+5y).
	NotBefore, NotAfter time.Time
	// Addresses are the LAN-zone HOST:PORT addresses written into the
	// bundle; nil reads them from the [lanzone] table of DIR/tapbeat.toml.
	// A running sensor passes the ones it resolved (its file may be
	// elsewhere, given with --config).
	Addresses []string
}

// Enroll issues a certificate for host name and adds it to the trust store.
// It refuses a name that already has an active certificate of the same kind.
func (a *Authority) Enroll(name string, opts EnrollOptions) (*Bundle, error) {
	bs, err := a.EnrollMany([]string{name}, opts)
	if err != nil {
		return nil, err
	}
	return bs[0], nil
}

// EnrollMany issues certificates for many host names with one journal
// append (bulk enrollment for fleets and load tests).
func (a *Authority) EnrollMany(names []string, opts EnrollOptions) ([]*Bundle, error) {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := CheckHostName(n); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
		// Host names are case-insensitive: ws-1 and WS-1 are one machine.
		if seen[strings.ToLower(n)] {
			return nil, fmt.Errorf("enroll: %s is listed twice (names are compared without regard to case)", n)
		}
		seen[strings.ToLower(n)] = true
	}
	unlock, err := lock(a.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ts, err := OpenTrustStore(a.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ts.Entries() {
		if e.Active() && e.Admin == opts.Admin && seen[strings.ToLower(e.Name)] {
			kind := "endpoint"
			if e.Admin {
				kind = "administrator"
			}
			return nil, fmt.Errorf("enroll: %s %s is already enrolled (id %s): revoke it first with `tapbeat revoke --dir %s --name %s`", kind, e.Name, e.ID, a.dir, e.Name)
		}
	}
	lan, err := lanInfo(a.dir, opts.Addresses)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	nb, na := opts.NotBefore, opts.NotAfter
	if nb.IsZero() {
		nb = now.Add(-5 * time.Minute)
	}
	if na.IsZero() {
		na = now.Add(ClientValidity)
	}
	out := make([]*Bundle, 0, len(names))
	recs := make([]record, 0, len(names))
	for _, name := range names {
		b, rec, err := a.issueClient(name, opts.Admin, nb, na, lan)
		if err != nil {
			return nil, err
		}
		rec.At = now
		out = append(out, b)
		recs = append(recs, rec)
	}
	if err := appendRecords(a.dir, recs); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *Authority) issueClient(name string, admin bool, nb, na time.Time, lan lanDetails) (*Bundle, record, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, record{}, fmt.Errorf("enroll %s: generate key: %w", name, err)
	}
	ou, prefix := OUEndpoint, "ep-"
	if admin {
		ou, prefix = OUAdmin, "adm-"
	}
	id := newID(prefix)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{a.Org()}, OrganizationalUnit: []string{ou}, CommonName: id},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, &key.PublicKey, a.caKey)
	if err != nil {
		return nil, record{}, fmt.Errorf("enroll %s: create certificate: %w", name, err)
	}
	keyPEM, err := pemKey(key)
	if err != nil {
		return nil, record{}, err
	}
	b := &Bundle{
		Format:    BundleFormat,
		ID:        id,
		Name:      name,
		Org:       a.Org(),
		Admin:     admin,
		Key:       string(keyPEM),
		Cert:      string(pemCert(der)),
		CA:        string(a.caPEM),
		Addresses: lan.addrs,
		Pin:       lan.pin,
	}
	rec := record{Op: "add", FP: FingerprintOf(der).String(), ID: id, Name: name, Org: a.Org(), Admin: admin, NotAfter: na.UTC()}
	return b, rec, nil
}

// Revoke removes every active certificate of host name (administrator
// certificates if admin) from the trust store and returns what it revoked.
// A running sensor closes the revoked endpoints' connections.
func (a *Authority) Revoke(name string, admin bool) ([]Entry, error) {
	unlock, err := lock(a.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ts, err := OpenTrustStore(a.dir)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	var hit []Entry
	var recs []record
	for _, e := range ts.Entries() {
		if e.Active() && e.Admin == admin && (e.Name == name || e.ID == name) {
			e.Revoked = now
			hit = append(hit, e)
			recs = append(recs, record{Op: "revoke", FP: e.Fingerprint.String(), At: now})
		}
	}
	if len(hit) == 0 {
		kind := "endpoint"
		if admin {
			kind = "administrator"
		}
		return nil, fmt.Errorf("revoke: no enrolled %s named %s (see `tapbeat endpoints --dir %s`)", kind, name, a.dir)
	}
	if err := appendRecords(a.dir, recs); err != nil {
		return nil, err
	}
	return hit, nil
}
