package daemon

// fdBudget splits the open-file limit so that no listener can take the
// descriptors the rest of the sensor needs: the history (Badger keeps a
// few dozen files open), the trust store and configuration re-reads, the
// capture rings, the alert destinations. The API listeners get a small cap
// each; the LAN zone gets what is left after a fixed reserve.
type fdBudget struct {
	apiConns int // per API listener (local socket, admin TLS)
	lanConns int // LAN-zone connections, handshaking ones included
}

// fdReserve is kept for everything that is not a client connection.
const fdReserve = 512

func newFDBudget(limit uint64) fdBudget {
	if limit == 0 {
		return fdBudget{apiConns: 128} // unknown limit: the LAN zone keeps its own default
	}
	api := min(max(int(limit/32), 8), 128)
	lan := int(limit) - fdReserve - 2*api
	if lan < 64 {
		lan = 64
	}
	return fdBudget{apiConns: api, lanConns: lan}
}
