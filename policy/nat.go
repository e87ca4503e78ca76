package policy

import (
	"net/netip"
	"slices"

	"github.com/idlegate/idlegate/conntrack"
)

// natTable holds the source NAT mappings (RFC 4787 terms). A mapping binds an inside
// endpoint to an outside address and port; it lives while at least one connection
// uses it and is freed with the last one (destroy.go), so a mapping lives and dies
// with its conntrack entries. Guarded by Engine.mu.
type natTable struct {
	cfg       *NAT
	byOutside map[natOut]*natMapping
	// byInside finds the mapping of an inside endpoint under endpoint-independent
	// mapping, so every destination sees the same outside port (RFC 4787 REQ-1).
	byInside map[natIn]*natMapping
	// next is where the port search starts. It moves on after every allocation, so
	// a connection that loses its mapping and comes back gets a different outside
	// port, as a real NAT gives it: the server then sees a stranger.
	next uint16
}

type natOut struct {
	proto uint8
	addr  netip.Addr
	port  uint16
}

type natIn struct {
	proto uint8
	ap    netip.AddrPort
}

type natMapping struct {
	proto  uint8
	inside netip.AddrPort
	out    netip.AddrPort
	refs   int
	// remotes counts live connections per outside peer address, for
	// address-dependent filtering.
	remotes map[netip.Addr]int
}

func (n *natTable) init(cfg *NAT) {
	n.cfg = cfg
	n.byOutside = map[natOut]*natMapping{}
	n.byInside = map[natIn]*natMapping{}
	n.next = cfg.Ports.Lo
}

// allocate picks the outside port for a new connection with original tuple orig:
// the existing mapping's port under endpoint-independent mapping, else the next free
// port of the range.
func (n *natTable) allocate(orig conntrack.Key, out netip.Addr) (uint16, bool) {
	in := natIn{orig.Proto, netip.AddrPortFrom(orig.SrcAddr(), orig.SrcPort)}
	if n.cfg.Mapping == EndpointIndependent {
		if m, ok := n.byInside[in]; ok && m.out.Addr() == out {
			return m.out.Port(), true
		}
	}
	lo, hi := n.cfg.Ports.Lo, n.cfg.Ports.Hi
	size := int(hi) - int(lo) + 1
	port := n.next
	for range size {
		if port < lo || port > hi {
			port = lo
		}
		if _, used := n.byOutside[natOut{orig.Proto, out, port}]; !used {
			n.next = port + 1
			return port, true
		}
		port++
	}
	return 0, false
}

// outsideOf is the outside end of a NAT'd connection: reply.Dst for one opened from
// the inside, orig.Dst for one opened from outside through a mapping.
func (n *natTable) outsideOf(orig, reply conntrack.Key) (natOut, netip.Addr, bool) {
	if o, ok := n.cfg.outside(reply.DstAddr().Is4()); ok && o == reply.DstAddr() {
		return natOut{orig.Proto, o, reply.DstPort}, reply.SrcAddr(), true
	}
	if o, ok := n.cfg.outside(orig.DstAddr().Is4()); ok && o == orig.DstAddr() {
		return natOut{orig.Proto, o, orig.DstPort}, orig.SrcAddr(), true
	}
	return natOut{}, netip.Addr{}, false
}

// bind records that a connection opened from the inside uses its mapping.
func (n *natTable) bind(orig, reply conntrack.Key) {
	k, remote, ok := n.outsideOf(orig, reply)
	if !ok {
		return
	}
	m := n.byOutside[k]
	if m == nil {
		m = &natMapping{
			proto:  orig.Proto,
			inside: netip.AddrPortFrom(orig.SrcAddr(), orig.SrcPort),
			out:    netip.AddrPortFrom(k.addr, k.port),
		}
		n.byOutside[k] = m
		if n.cfg.Mapping == EndpointIndependent {
			n.byInside[natIn{orig.Proto, m.inside}] = m
		}
	}
	n.addRef(m, remote)
}

func (n *natTable) addRef(m *natMapping, remote netip.Addr) {
	m.refs++
	if n.cfg.Filtering == AddressDependent {
		if m.remotes == nil {
			m.remotes = map[netip.Addr]int{}
		}
		m.remotes[remote]++
	}
}

// unbind drops a connection's hold on its mapping and frees the mapping with the last.
func (n *natTable) unbind(orig, reply conntrack.Key) {
	k, remote, ok := n.outsideOf(orig, reply)
	if !ok {
		return
	}
	m := n.byOutside[k]
	if m == nil {
		return
	}
	if m.remotes != nil {
		if m.remotes[remote]--; m.remotes[remote] <= 0 {
			delete(m.remotes, remote)
		}
	}
	if m.refs--; m.refs > 0 {
		return
	}
	delete(n.byOutside, k)
	if in := (natIn{m.proto, m.inside}); n.byInside[in] == m {
		delete(n.byInside, in)
	}
}

// lookup finds the mapping that owns an outside address and port.
func (n *natTable) lookup(proto uint8, addr netip.Addr, port uint16) (*natMapping, bool) {
	m, ok := n.byOutside[natOut{proto, addr, port}]
	return m, ok
}

// admits applies the filtering behaviour to an inbound packet of no live connection
// that hits mapping m. Address-and-port-dependent filtering admits only the exact
// peers, which live connections already match, so it admits nothing here.
func (n *natTable) admits(m *natMapping, src netip.Addr, _ uint16) bool {
	switch n.cfg.Filtering {
	case EndpointIndependent:
		return true
	case AddressDependent:
		return m.remotes[src] > 0
	}
	return false
}

func natEqual(a, b *NAT) bool {
	return a.Enabled == b.Enabled && a.Mapping == b.Mapping && a.Filtering == b.Filtering &&
		a.Ports == b.Ports && slices.Equal(a.Outside, b.Outside)
}
