package pki

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// TicketKeyFile holds the TLS session-ticket keys (mode 0600), so agents
// can resume their sessions across a sensor restart and a reconnect storm
// after a restart stays cheap.
const TicketKeyFile = "session-tickets.json"

// TicketKeyLifetime is how long a ticket key encrypts new tickets; the
// previous key is kept for one more lifetime to decrypt older ones.
const TicketKeyLifetime = 24 * time.Hour

type ticketKey struct {
	Created time.Time `json:"created"`
	Key     []byte    `json:"key"`
}

// SessionTicketKeys returns the session-ticket keys for tls.Config.
// SetSessionTicketKeys, newest first, creating or rotating them in dir as
// needed.
func SessionTicketKeys(dir string, now time.Time) ([][32]byte, error) {
	p := filepath.Join(dir, TicketKeyFile)
	var keys []ticketKey
	if b, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(b, &keys); err != nil {
			keys = nil // damaged: start over (agents fall back to full handshakes)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("session ticket keys: %w", err)
	}
	valid := keys[:0]
	for _, k := range keys {
		if len(k.Key) == 32 && now.Sub(k.Created) < 2*TicketKeyLifetime {
			valid = append(valid, k)
		}
	}
	keys = valid
	if len(keys) == 0 || now.Sub(keys[0].Created) >= TicketKeyLifetime {
		k := ticketKey{Created: now.UTC(), Key: make([]byte, 32)}
		if _, err := rand.Read(k.Key); err != nil {
			return nil, fmt.Errorf("session ticket keys: %w", err)
		}
		keys = append([]ticketKey{k}, keys...)
		if len(keys) > 2 {
			keys = keys[:2]
		}
		b, err := json.Marshal(keys)
		if err != nil {
			return nil, fmt.Errorf("session ticket keys: %w", err)
		}
		if err := writeFile(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	out := make([][32]byte, len(keys))
	for i, k := range keys {
		copy(out[i][:], k.Key)
	}
	return out, nil
}
