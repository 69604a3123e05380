package history

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Key layout. Day-partitioned records start with 'd' and the UTC day number
// (days since 1970-01-01, big-endian uint32), then a kind byte:
//
//	d day 'e' seq8                     event JSON
//	d day 'n' id 0 time8 seq8          endpoint index ('t' for a status transition)
//	d day 'm' mac6 time8 seq8          MAC index (events without an endpoint)
//	d day 'a' type 0 time8 seq8        alert index (severity notice or worse)
//	d day 'r' id 0 time8               registry snapshot JSON
//	d day 'o' mac6 time8               MAC owner: endpoint id ("" when released)
//	d day 'b' ip16 start8 mac6         binding interval JSON
//	d day 'f' mac6 minute4             traffic: packets8 bytes8
//	d day 'u' mac6                     unmanaged station JSON
//
// Other parts keep their own key spaces (Store.Space) under "x/NAME/".
//
// Undated records start with "s/": latest endpoint state, the name index,
// the next sequence number and the set of MACs reported without heartbeat.
const (
	kindEvent     = 'e'
	kindEndpoint  = 'n'
	kindMAC       = 'm'
	kindAlert     = 'a'
	kindRegistry  = 'r'
	kindOwner     = 'o'
	kindBinding   = 'b'
	kindTraffic   = 'f'
	kindUnmanaged = 'u'
)

const (
	prefixDay       = 'd'
	prefixState     = "s/state/"
	prefixName      = "s/name/"
	prefixAlerted   = "s/um/"
	prefixBeats     = "s/beats/" // last heartbeats newer than the states (beats.go)
	keyNextSeq      = "s/meta/nextseq"
	keyStateSeq     = "s/meta/stateseq" // the persisted states reflect events up to this seq
	keySnapshotTime = "s/meta/snapshot"
)

// prefixSpaces holds the spaces (Store.Space) of other parts: x/NAME/...
// History never reads or writes keys under it.
const prefixSpaces = "x/"

const dayLen = 24 * time.Hour

// dayOf returns the UTC day number of t.
func dayOf(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint32(s / 86400)
}

// dayStart returns the first instant of day d.
func dayStart(d uint32) time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func nanos(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func dayPrefix(day uint32) []byte {
	k := make([]byte, 5, 64)
	k[0] = prefixDay
	binary.BigEndian.PutUint32(k[1:], day)
	return k
}

func kindPrefix(day uint32, kind byte) []byte {
	return append(dayPrefix(day), kind)
}

func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func eventKey(day uint32, seq uint64) []byte {
	return put64(kindPrefix(day, kindEvent), seq)
}

// idPrefix is day kind id 0: the prefix of records about one endpoint.
func idPrefix(day uint32, kind byte, id string) []byte {
	k := append(kindPrefix(day, kind), id...)
	return append(k, 0)
}

func macPrefix(day uint32, kind byte, m schema.MAC) []byte {
	return append(kindPrefix(day, kind), m[:]...)
}

func ip16(a netip.Addr) []byte {
	b := a.Unmap().As16()
	return b[:]
}

func bindingPrefix(day uint32, ip netip.Addr) []byte {
	return append(kindPrefix(day, kindBinding), ip16(ip)...)
}

// indexKey appends time8 and seq8 to a prefix.
func indexKey(prefix []byte, t time.Time, seq uint64) []byte {
	k := make([]byte, 0, len(prefix)+16)
	k = append(k, prefix...)
	k = put64(k, nanos(t))
	return put64(k, seq)
}

// indexTail decodes time8 seq8 at the end of an index key.
func indexTail(k []byte) (t uint64, seq uint64) {
	n := len(k)
	return binary.BigEndian.Uint64(k[n-16:]), binary.BigEndian.Uint64(k[n-8:])
}

// keyDay returns the day of a day-partitioned key.
func keyDay(k []byte) (uint32, bool) {
	if len(k) < 5 || k[0] != prefixDay {
		return 0, false
	}
	return binary.BigEndian.Uint32(k[1:5]), true
}

// upper returns the smallest key greater than every key with prefix p plus
// any suffix up to 32 bytes of 0xff: the start point of a reverse seek.
func upper(p []byte) []byte {
	k := make([]byte, 0, len(p)+32)
	k = append(k, p...)
	for range 32 {
		k = append(k, 0xff)
	}
	return k
}
