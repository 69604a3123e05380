package history

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Space is a key space of its own inside the history database, for a part
// that keeps durable state beside the history (the alert outbox). Keys are
// ordered bytewise; history never reads or writes a space's keys, and a
// space sees only its own. Its methods are safe for concurrent use.
type Space struct {
	s      *Store
	prefix []byte
}

// Space returns the key space called name (lower-case letters and digits).
// Spaces live under their own prefix, apart from everything history keeps.
func (s *Store) Space(name string) (*Space, error) {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return nil, fmt.Errorf("history space %q: want a name of lower-case letters and digits", name)
	}
	return &Space{s: s, prefix: []byte(prefixSpaces + name + "/")}, nil
}

// Batch is a set of writes made together: with the events of an Append
// (Store.Append's stage function), or on their own (Space.Update).
type Batch struct {
	wb *badger.WriteBatch
	s  *Store
}

// Set writes key=value in space sp when the batch is applied.
func (b *Batch) Set(sp *Space, key, value []byte) error {
	if sp.s != b.s {
		return errors.New("history batch: space of another store")
	}
	return b.wb.Set(sp.key(key), value)
}

// Delete removes key from space sp when the batch is applied.
func (b *Batch) Delete(sp *Space, key []byte) error {
	if sp.s != b.s {
		return errors.New("history batch: space of another store")
	}
	return b.wb.Delete(sp.key(key))
}

func (sp *Space) key(k []byte) []byte {
	out := make([]byte, 0, len(sp.prefix)+len(k))
	return append(append(out, sp.prefix...), k...)
}

// Get returns the value of key, or nil and false when the space holds no
// such key.
func (sp *Space) Get(key []byte) ([]byte, bool, error) {
	var v []byte
	err := sp.s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(sp.key(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("history space %s: get: %w", sp.prefix, err)
	}
	return v, true, nil
}

// Scan calls fn with every key from `from` on, in order, and its value
// when withValues is set (nil otherwise), until fn returns false. Key and
// value are valid only during the call. Scanning sees the space as it was
// when the scan began.
func (sp *Space) Scan(from []byte, withValues bool, fn func(key, value []byte) (bool, error)) error {
	err := sp.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: sp.prefix, PrefetchValues: withValues, PrefetchSize: 256})
		defer it.Close()
		for it.Seek(sp.key(from)); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()[len(sp.prefix):]
			var more bool
			var err error
			if withValues {
				err = item.Value(func(v []byte) error {
					more, err = fn(k, v)
					return err
				})
			} else {
				more, err = fn(k, nil)
			}
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("history space %s: scan: %w", bytes.TrimSuffix(sp.prefix, []byte("/")), err)
	}
	return nil
}

// Update applies the writes fn adds to a batch, together; it fails
// with ErrDiskFull, writing nothing, while the disk is below the reserve.
func (sp *Space) Update(fn func(*Batch) error) error {
	if err := sp.s.RoomToWrite(); err != nil {
		return err
	}
	wb := sp.s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := fn(&Batch{wb: wb, s: sp.s}); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("history space %s: write: %w", sp.prefix, err)
	}
	return nil
}
