package agent

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"golang.org/x/sys/unix"
)

// IsolationTable is the nftables table (family inet) the agent owns.
const IsolationTable = "tapbeat_agent"

// Isolator drops inbound traffic from red and missing endpoints with
// nftables sets in a table of its own: ip/ip6 source addresses and Ethernet
// source MACs. Close removes the table.
type Isolator struct {
	c                  *nftables.Conn
	table              *nftables.Table
	set4, set6, setMAC *nftables.Set
}

// NewIsolator creates (or re-creates) the isolation table. It keeps one
// netlink socket, opened in the calling thread's network namespace, or in
// the namespace of netnsFd when it is >= 0.
func NewIsolator(netnsFd int) (*Isolator, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if netnsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("isolation: nftables: %w", err)
	}
	i := &Isolator{c: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: IsolationTable}}
	// Start from a clean table (a previous run may have left one).
	c.AddTable(i.table)
	c.DelTable(i.table)
	c.AddTable(i.table)
	i.set4 = &nftables.Set{Table: i.table, Name: "at_risk_v4", KeyType: nftables.TypeIPAddr}
	i.set6 = &nftables.Set{Table: i.table, Name: "at_risk_v6", KeyType: nftables.TypeIP6Addr}
	i.setMAC = &nftables.Set{Table: i.table, Name: "at_risk_mac", KeyType: nftables.TypeEtherAddr}
	for _, s := range []*nftables.Set{i.set4, i.set6, i.setMAC} {
		if err := c.AddSet(s, nil); err != nil {
			return nil, fmt.Errorf("isolation: add set %s: %w", s.Name, err)
		}
	}
	policy := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name: "input", Table: i.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	lookup := func(s *nftables.Set, pre ...expr.Any) []expr.Any {
		return append(pre,
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop})
	}
	c.AddRule(&nftables.Rule{Table: i.table, Chain: chain, Exprs: lookup(i.set4,
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})})
	c.AddRule(&nftables.Rule{Table: i.table, Chain: chain, Exprs: lookup(i.set6,
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16})})
	c.AddRule(&nftables.Rule{Table: i.table, Chain: chain, Exprs: lookup(i.setMAC,
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.ARPHRD_ETHER, 0}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6})})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("isolation: create table inet %s (needs root and nf_tables): %w", IsolationTable, err)
	}
	return i, nil
}

// Apply makes the sets hold exactly these addresses.
func (i *Isolator) Apply(ips []netip.Addr, macs []schema.MAC) error {
	var v4, v6, m []nftables.SetElement
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		ip = ip.Unmap()
		if seen[ip] {
			continue
		}
		seen[ip] = true
		if ip.Is4() {
			b := ip.As4()
			v4 = append(v4, nftables.SetElement{Key: b[:]})
		} else {
			b := ip.As16()
			v6 = append(v6, nftables.SetElement{Key: b[:]})
		}
	}
	seenMAC := map[schema.MAC]bool{}
	for _, mac := range macs {
		if seenMAC[mac] || mac.IsZero() {
			continue
		}
		seenMAC[mac] = true
		m = append(m, nftables.SetElement{Key: append([]byte(nil), mac[:]...)})
	}
	for _, x := range []struct {
		s  *nftables.Set
		el []nftables.SetElement
	}{{i.set4, v4}, {i.set6, v6}, {i.setMAC, m}} {
		i.c.FlushSet(x.s)
		if len(x.el) > 0 {
			if err := i.c.SetAddElements(x.s, x.el); err != nil {
				return fmt.Errorf("isolation: set %s: %w", x.s.Name, err)
			}
		}
	}
	if err := i.c.Flush(); err != nil {
		return fmt.Errorf("isolation: update sets: %w", err)
	}
	return nil
}

// Close removes the isolation table.
func (i *Isolator) Close() error {
	i.c.DelTable(i.table)
	if err := i.c.Flush(); err != nil {
		return fmt.Errorf("isolation: delete table: %w", err)
	}
	return i.c.CloseLasting()
}
