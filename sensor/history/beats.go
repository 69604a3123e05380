package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// A connected endpoint's state changes every minute only by its last
// heartbeat. A snapshot therefore writes an endpoint's state whole only when
// something else changed, and packs the newer last heartbeats of the others
// into a few beat records (prefixBeats): about 25 bytes per endpoint instead
// of its whole state, and no per-endpoint keys for Badger to flush and
// compact every minute. Loading applies the beats over the states.

// beatsPerRecord bounds a beat record to ~200 KB, well below the value
// log threshold, so beats stay in the LSM tree like the states.
const beatsPerRecord = 4096

// beat is one endpoint's last heartbeat, newer than its stored state's.
type beat struct {
	id string
	at time.Time
}

// beatKey is the key of beat record i.
func beatKey(i int) []byte {
	return binary.BigEndian.AppendUint32([]byte(prefixBeats), uint32(i))
}

// encodeBeats packs beats as (unix nanoseconds uint64, id length uvarint,
// id) entries.
func encodeBeats(bs []beat) []byte {
	n := 0
	for _, b := range bs {
		n += 8 + binary.MaxVarintLen16 + len(b.id)
	}
	out := make([]byte, 0, n)
	for _, b := range bs {
		out = binary.BigEndian.AppendUint64(out, nanos(b.at))
		out = binary.AppendUvarint(out, uint64(len(b.id)))
		out = append(out, b.id...)
	}
	return out
}

// decodeBeats calls fn for each beat in v.
func decodeBeats(v []byte, fn func(id string, at time.Time)) error {
	for len(v) > 0 {
		if len(v) < 9 {
			return errors.New("truncated beat")
		}
		at := time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		l, w := binary.Uvarint(v[8:])
		if w <= 0 || uint64(len(v)-8-w) < l {
			return errors.New("truncated beat id")
		}
		fn(string(v[8+w:8+w+int(l)]), at)
		v = v[8+w+int(l):]
	}
	return nil
}

// stageBeats writes bs as beat records and deletes the records left from a
// longer previous set.
func (s *Store) stageBeats(wb *badger.WriteBatch, bs []beat) error {
	n := 0
	for ; len(bs) > 0; n++ {
		chunk := bs[:min(len(bs), beatsPerRecord)]
		bs = bs[len(chunk):]
		if err := wb.Set(beatKey(n), encodeBeats(chunk)); err != nil {
			return fmt.Errorf("write last heartbeats: %w", err)
		}
	}
	for i := n; i < s.beatRecords; i++ {
		if err := wb.Delete(beatKey(i)); err != nil {
			return fmt.Errorf("write last heartbeats: %w", err)
		}
	}
	s.beatRecords = n
	return nil
}

// sameButBeat reports whether st equals the stored old in everything but
// the last heartbeat.
func sameButBeat(old, st *schema.EndpointState) bool {
	return old.ID == st.ID && old.Name == st.Name && old.Org == st.Org &&
		old.Health == st.Health && old.Status == st.Status && old.Connected == st.Connected &&
		old.StatusSince.Equal(st.StatusSince) &&
		slices.Equal(old.Reasons, st.Reasons) && slices.Equal(old.Users, st.Users) &&
		slices.EqualFunc(old.Interfaces, st.Interfaces, func(a, b schema.Interface) bool {
			return a.Name == b.Name && a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs)
		})
}

// applyBeat raises a loaded state's last heartbeat to at.
func (s *Store) applyBeat(id string, at time.Time) {
	if st := s.states[id]; st != nil && at.After(st.LastHeartbeat) {
		st.LastHeartbeat = at
		s.beaten[id] = struct{}{}
	}
}
