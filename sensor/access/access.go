// Package access owns the console's principals: local accounts (name,
// role, argon2id password hash) and API tokens (name, role, SHA-256 of the
// token), kept in the sensor directory as DIR/console/users.json and
// DIR/console/tokens.json (mode 0600). The CLI writes them; the daemon
// re-reads a file when it changes, so an account added or removed applies
// without a restart.
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Role says what a principal may do.
type Role string

// Roles.
const (
	// RoleViewer reads every page and API route.
	RoleViewer Role = "viewer"
	// RoleAdmin also enrolls, revokes and triages.
	RoleAdmin Role = "admin"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleViewer, RoleAdmin:
		return Role(s), nil
	}
	return "", fmt.Errorf("role %q: want admin or viewer", s)
}

// CanChange reports whether the role may change anything.
func (r Role) CanChange() bool { return r == RoleAdmin }

// File names under DIR/console.
const (
	SubDir     = "console"
	UsersFile  = "users.json"
	TokensFile = "tokens.json"
)

// Params are argon2id's cost parameters. Hashes carry their own, so a
// change applies to new passwords only.
type Params struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultParams are RFC 9106's second recommended option (t=3, 64 MiB).
var DefaultParams = Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// User is a local account.
type User struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"hash"` // PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$key
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"`
}

// Token is an API token's record; the token itself is never stored.
type Token struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// Store reads and writes the account and token files of one directory.
type Store struct {
	dir    string
	params Params

	mu     sync.Mutex
	users  cached[User]
	tokens cached[Token]
}

type cached[T any] struct {
	mod  time.Time
	size int64
	list []T
}

// Open returns the store of sensor directory dir (the files need not exist).
func Open(dir string, p Params) *Store {
	if p.Time == 0 {
		p = DefaultParams
	}
	return &Store{dir: filepath.Join(dir, SubDir), params: p}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CheckName checks an account or token name.
func CheckName(n string) error {
	if !nameRE.MatchString(n) {
		return fmt.Errorf("name %q: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", n)
	}
	return nil
}

// MinPassword is the shortest password accepted.
const MinPassword = 10

// ErrNoSuchUser is returned for an unknown account.
var ErrNoSuchUser = errors.New("no such account")

// ErrBadPassword is returned by Authenticate for a wrong password or an
// unknown account (the caller cannot tell which).
var ErrBadPassword = errors.New("wrong name or password")

// Users lists the accounts, by name.
func (s *Store) Users() ([]User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := load(s.path(UsersFile), &s.users)
	return slices.Clone(l), err
}

// AddUser creates an account; it refuses an existing name.
func (s *Store) AddUser(name string, role Role, password []byte, now time.Time) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	return s.updateUsers(func(l []User) ([]User, error) {
		if slices.ContainsFunc(l, func(u User) bool { return u.Name == name }) {
			return nil, fmt.Errorf("account %q exists: use `tapbeat user passwd` to change its password", name)
		}
		return append(l, User{Name: name, Role: role, Hash: h, Created: now.UTC(), Changed: now.UTC()}), nil
	})
}

// SetPassword changes an account's password.
func (s *Store) SetPassword(name string, password []byte, now time.Time) error {
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	return s.updateUsers(func(l []User) ([]User, error) {
		i := slices.IndexFunc(l, func(u User) bool { return u.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("account %q: %w", name, ErrNoSuchUser)
		}
		l[i].Hash, l[i].Changed = h, now.UTC()
		return l, nil
	})
}

// RemoveUser deletes an account.
func (s *Store) RemoveUser(name string) error {
	return s.updateUsers(func(l []User) ([]User, error) {
		i := slices.IndexFunc(l, func(u User) bool { return u.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("account %q: %w", name, ErrNoSuchUser)
		}
		return slices.Delete(l, i, i+1), nil
	})
}

// Authenticate checks a password and returns the account. An unknown
// account costs the same hashing as a known one.
func (s *Store) Authenticate(name string, password []byte) (User, error) {
	users, err := s.Users()
	if err != nil {
		return User{}, err
	}
	i := slices.IndexFunc(users, func(u User) bool { return u.Name == name })
	if i < 0 {
		_, _ = verify(dummyHash(s.params), password)
		return User{}, ErrBadPassword
	}
	ok, err := verify(users[i].Hash, password)
	if err != nil {
		return User{}, fmt.Errorf("account %q: %w", name, err)
	}
	if !ok {
		return User{}, ErrBadPassword
	}
	return users[i], nil
}

// Lookup returns an account by name.
func (s *Store) Lookup(name string) (User, error) {
	users, err := s.Users()
	if err != nil {
		return User{}, err
	}
	i := slices.IndexFunc(users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return User{}, fmt.Errorf("account %q: %w", name, ErrNoSuchUser)
	}
	return users[i], nil
}

// Tokens lists the API tokens, by name.
func (s *Store) Tokens() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := load(s.path(TokensFile), &s.tokens)
	return slices.Clone(l), err
}

// TokenPrefix starts every API token, so a leaked one is recognisable.
const TokenPrefix = "tbt_"

// AddToken creates a token and returns it; only its hash is kept.
func (s *Store) AddToken(name string, role Role, now time.Time) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	err := s.updateTokens(func(l []Token) ([]Token, error) {
		if slices.ContainsFunc(l, func(t Token) bool { return t.Name == name }) {
			return nil, fmt.Errorf("token %q exists: remove it first (`tapbeat token remove`)", name)
		}
		return append(l, Token{Name: name, Role: role, SHA256: tokenHash(tok), Created: now.UTC()}), nil
	})
	if err != nil {
		return "", err
	}
	return tok, nil
}

// RemoveToken deletes a token.
func (s *Store) RemoveToken(name string) error {
	return s.updateTokens(func(l []Token) ([]Token, error) {
		i := slices.IndexFunc(l, func(t Token) bool { return t.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("token %q: no such token", name)
		}
		return slices.Delete(l, i, i+1), nil
	})
}

// ErrBadToken is returned for a token the store does not hold.
var ErrBadToken = errors.New("unknown API token")

// CheckToken returns the record of a presented token.
func (s *Store) CheckToken(tok string) (Token, error) {
	if !strings.HasPrefix(tok, TokenPrefix) {
		return Token{}, ErrBadToken
	}
	h := tokenHash(tok)
	l, err := s.Tokens()
	if err != nil {
		return Token{}, err
	}
	for _, t := range l {
		if subtle.ConstantTimeCompare([]byte(t.SHA256), []byte(h)) == 1 {
			return t, nil
		}
	}
	return Token{}, ErrBadToken
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func (s *Store) path(f string) string { return filepath.Join(s.dir, f) }

func (s *Store) updateUsers(fn func([]User) ([]User, error)) error {
	return s.locked(func() error { return updateList(s.path(UsersFile), &s.users, fn) })
}

func (s *Store) updateTokens(fn func([]Token) ([]Token, error)) error {
	return s.locked(func() error { return updateList(s.path(TokensFile), &s.tokens, fn) })
}

// locked runs fn holding the store's mutex and the directory's file lock.
func (s *Store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockDir(s.dir)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

func updateList[T any](path string, c *cached[T], fn func([]T) ([]T, error)) error {
	c.mod = time.Time{} // read the file again under the lock
	l, err := load(path, c)
	if err != nil {
		return err
	}
	l, err = fn(slices.Clone(l))
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	c.mod = time.Time{}
	return nil
}

// load returns the list in path, re-reading it only when its modification
// time or size changed.
func load[T any](path string, c *cached[T]) ([]T, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		c.list, c.mod = nil, time.Time{}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if !c.mod.IsZero() && fi.ModTime().Equal(c.mod) && fi.Size() == c.size {
		return c.list, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	var l []T
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("access: %s is damaged: %w (restore it from a backup, or remove it and add the accounts again)", path, err)
	}
	c.list, c.mod, c.size = l, fi.ModTime(), fi.Size()
	return l, nil
}

func (s *Store) hash(password []byte) (string, error) {
	if len(password) < MinPassword {
		return "", fmt.Errorf("password too short: use at least %d characters", MinPassword)
	}
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", err
	}
	return phc(s.params, salt[:], password), nil
}

func phc(p Params, salt, password []byte) string {
	key := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func dummyHash(p Params) string {
	return phc(p, make([]byte, 16), []byte("not a password of anyone"))
}

// verify checks password against a PHC argon2id string.
func verify(encoded string, password []byte) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash is not argon2id")
	}
	var v int
	var p Params
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("password hash: argon2 version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, fmt.Errorf("password hash parameters %q: %w", parts[3], err)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("password hash: %w", err)
	}
	got := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
