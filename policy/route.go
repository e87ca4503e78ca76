package policy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/idlegate/idlegate/packet"
)

// What a router in the gateway's place checks before it forwards a packet, after
// Linux's ip_rcv and ip_route_input_slow (martian source and destination),
// fib_validate_source (strict reverse path filter, rp_filter=1) and RFC 1812 5.3.7:
//
//   - martian: a source or destination no router forwards: 0.0.0.0/8 and
//     255.255.255.255, the directed broadcast of a known IPv4 network shorter than
//     /31 (Linux's only broadcast route for a subnet: not forwarded while
//     bc_forwarding is 0), IPv6 :: and IPv4-mapped addresses (RFC 4291 2.5.2,
//     2.5.5.2), and one of the gateway's own addresses as a source;
//   - spoofed: the source is not routed back to the side the packet arrived on (the
//     longest known prefix holding it is on the other side, or none is), unless
//     the policy's source_check is off;
//   - no-route: the destination is one of the gateway's own addresses (which serve
//     nothing), or is not routed to the other side: it is on the side the packet
//     came from, or outside every known network. Under NAT, an inbound packet to
//     the outside address is routed (NAT then looks for its mapping).
//
// Before these, multicast, link-local and loopback addresses stop (not-forwarded).
// Spoofed and no-route apply to a family only when the engine knows a network of
// it: with none (replay without --inside), only martians are dropped.

// Networks is what the engine knows of the networks on each side, as a router's
// routing table tells it which interface leads where. The caller gives them: the
// lab its fixed prefixes, replay its --inside networks (and everything else
// outside). The zero Networks knows none.
type Networks struct {
	// Inside and Outside are the networks reached through each side, as prefixes
	// with no host bits (198.18.0.0/24, fd00:18::/64); 0.0.0.0/0 or ::/0 is a
	// default route. A packet's address goes to the side of the longest prefix
	// holding it; a prefix may not be on both sides.
	Inside, Outside []netip.Prefix
	// Gateway are the gateway's own addresses, such as the lab's 198.18.0.1 and
	// NAT addresses: a packet from one is a martian, a packet to one has no route
	// (NAT's outside address, when NAT is on, is the gateway's too, whether listed
	// or not). The first of each IP family in a side's networks is the gateway's
	// address on that side as a router hop: the source of the ICMP time exceeded it
	// sends there (decrement_ttl; hop.go).
	Gateway []netip.Addr
}

// Validate reports the first prefix or address that cannot be routed by.
func (n *Networks) Validate() error {
	seen := map[netip.Prefix]Side{}
	for side, list := range [2][]netip.Prefix{n.Inside, n.Outside} {
		for _, p := range list {
			switch {
			case !p.IsValid():
				return fmt.Errorf("networks: %s network %q is not a prefix like 198.18.0.0/24", Side(side), p)
			case p.Addr().Is4In6():
				return fmt.Errorf("networks: %s network %s is IPv4-mapped; write it as IPv4, %s", Side(side), p, netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked())
			case p.Addr().Zone() != "":
				return fmt.Errorf("networks: %s network %s has a zone; give it without one", Side(side), p)
			case p != p.Masked():
				return fmt.Errorf("networks: %s network %s has host bits set; write %s", Side(side), p, p.Masked())
			}
			if s, ok := seen[p]; ok && s != Side(side) {
				return fmt.Errorf("networks: %s is on both sides; give each network to one side", p)
			}
			seen[p] = Side(side)
		}
	}
	for _, a := range n.Gateway {
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			return fmt.Errorf("networks: gateway address %q is not a plain IPv4 or IPv6 address", a)
		}
	}
	return nil
}

func (n Networks) clone() Networks {
	return Networks{Inside: slices.Clone(n.Inside), Outside: slices.Clone(n.Outside), Gateway: slices.Clone(n.Gateway)}
}

// SetNetworks tells the engine which networks lie on each side; from then on it
// drops what a router there would not forward (see route.go). It may be called on
// a running engine; the zero Networks turns the route checks off again.
func (e *Engine) SetNetworks(n Networks) error {
	if err := n.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nets = n.clone()
	e.routes = compileRoutes(&e.nets, &e.pol.NAT)
	return nil
}

// Networks returns the networks the engine routes by.
func (e *Engine) Networks() Networks {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nets.clone()
}

// The addresses of a family are compared as integers: an IPv4 address as 32 bits,
// an IPv6 one as 128 (addr128), without netip's per-call family checks: this runs for
// every packet.

type addr128 struct{ hi, lo uint64 }

func a128(a netip.Addr) addr128 {
	b := a.As16()
	return addr128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a addr128) and(m addr128) addr128 { return addr128{a.hi & m.hi, a.lo & m.lo} }

func a32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

type route4 struct {
	net, mask uint32
	side      Side
}

type route6 struct {
	net, mask addr128
	side      Side
}

// routes is Networks (and NAT's outside addresses) compiled for the packet path.
// Guarded by Engine.mu.
type routes struct {
	v4     []route4 // longest prefix first
	v6     []route6 // longest prefix first
	bcast4 []uint32 // directed broadcasts of the IPv4 networks
	own4   []uint32
	own6   []addr128
	// nat4 and nat6 are NAT's outside addresses while NAT is on (has4, has6).
	nat4       uint32
	nat6       addr128
	has4, has6 bool
	// hop is the gateway's address per Side and IP family (0 IPv4, 1 IPv6) as a
	// router hop; the zero Addr where it has none.
	hop [2][2]netip.Addr
}

func compileRoutes(n *Networks, nat *NAT) routes {
	var r routes
	type pr struct {
		p    netip.Prefix
		side Side
	}
	var all []pr
	for _, p := range n.Inside {
		all = append(all, pr{p, Inside})
	}
	for _, p := range n.Outside {
		all = append(all, pr{p, Outside})
	}
	slices.SortStableFunc(all, func(a, b pr) int { return b.p.Bits() - a.p.Bits() })
	for _, x := range all {
		bits := x.p.Bits()
		if x.p.Addr().Is4() {
			mask := uint32(0)
			if bits > 0 {
				mask = ^uint32(0) << (32 - bits)
			}
			net := a32(x.p.Addr()) & mask
			r.v4 = append(r.v4, route4{net, mask, x.side})
			if bits > 0 && bits < 31 {
				r.bcast4 = append(r.bcast4, net|^mask)
			}
			continue
		}
		mask := prefixMask(bits)
		r.v6 = append(r.v6, route6{a128(x.p.Addr()).and(mask), mask, x.side})
	}
	own := func(a netip.Addr) {
		if a = a.Unmap(); a.Is4() && !slices.Contains(r.own4, a32(a)) {
			r.own4 = append(r.own4, a32(a))
		} else if a.Is6() && !slices.Contains(r.own6, a128(a)) {
			r.own6 = append(r.own6, a128(a))
		}
	}
	hop := func(a netip.Addr) {
		a = a.Unmap()
		fam := 0
		var side Side
		var ok bool
		if a.Is4() {
			side, ok = lookup4(r.v4, a32(a))
		} else {
			fam = 1
			side, ok = lookup6(r.v6, a128(a))
		}
		if ok && !r.hop[side][fam].IsValid() {
			r.hop[side][fam] = a
		}
	}
	for _, a := range n.Gateway {
		own(a)
		hop(a)
	}
	if nat.Enabled {
		for _, a := range nat.Outside {
			own(a)
			hop(a)
			if a = a.Unmap(); a.Is4() {
				r.nat4, r.has4 = a32(a), true
			} else {
				r.nat6, r.has6 = a128(a), true
			}
		}
	}
	return r
}

// hopAddr is the gateway's address of IP version v on side, the zero Addr if it has
// none there.
func (r *routes) hopAddr(side Side, v uint8) netip.Addr {
	if v == 4 {
		return r.hop[side][0]
	}
	return r.hop[side][1]
}

// prefixMask is the mask of the first bits of 128.
func prefixMask(bits int) addr128 {
	var m addr128
	switch {
	case bits >= 128:
		m = addr128{^uint64(0), ^uint64(0)}
	case bits > 64:
		m = addr128{^uint64(0), ^uint64(0) << (128 - bits)}
	case bits > 0:
		m = addr128{^uint64(0) << (64 - bits), 0}
	}
	return m
}

// check applies every address check to a decoded packet that arrived in dir: ok, or
// the reason to drop it: not-forwarded, martian, spoofed or no-route, in that order.
func (r *routes) check(p *packet.Info, dir Dir, sourceCheck bool) (Reason, bool) {
	if p.Version == 4 {
		return r.check4(a32(p.Src), a32(p.Dst), dir, sourceCheck)
	}
	return r.check6(a128(p.Src), a128(p.Dst), dir, sourceCheck)
}

func (r *routes) check4(src, dst uint32, dir Dir, sourceCheck bool) (Reason, bool) {
	// Multicast 224.0.0.0/4, link-local 169.254.0.0/16, loopback 127.0.0.0/8.
	if src>>28 == 0xe || dst>>28 == 0xe || src>>16 == 0xa9fe || dst>>16 == 0xa9fe || src>>24 == 127 || dst>>24 == 127 {
		return ReasonNotForwarded, false
	}
	// 0.0.0.0/8, limited broadcast, directed broadcasts, the gateway's own as source.
	if src>>24 == 0 || dst>>24 == 0 || src == 0xffffffff || dst == 0xffffffff {
		return ReasonMartian, false
	}
	for _, b := range r.bcast4 {
		if src == b || dst == b {
			return ReasonMartian, false
		}
	}
	toOwn := false
	for _, o := range r.own4 {
		if src == o {
			return ReasonMartian, false
		}
		toOwn = toOwn || dst == o
	}
	if sourceCheck && len(r.v4) > 0 {
		if s, ok := lookup4(r.v4, src); !ok || s != dir.From() {
			return ReasonSpoofed, false
		}
	}
	if dir == Inbound && r.has4 && dst == r.nat4 {
		return 0, true
	}
	if toOwn {
		return ReasonNoRoute, false
	}
	if len(r.v4) > 0 {
		if s, ok := lookup4(r.v4, dst); !ok || s != dir.To() {
			return ReasonNoRoute, false
		}
	}
	return 0, true
}

func (r *routes) check6(src, dst addr128, dir Dir, sourceCheck bool) (Reason, bool) {
	// Multicast ff00::/8, link-local unicast fe80::/10, loopback ::1.
	if src.hi>>56 == 0xff || dst.hi>>56 == 0xff || src.hi>>54 == 0x3fa || dst.hi>>54 == 0x3fa ||
		src == (addr128{0, 1}) || dst == (addr128{0, 1}) {
		return ReasonNotForwarded, false
	}
	// :: and IPv4-mapped addresses (::ffff:0:0/96), the gateway's own as source.
	if src.hi == 0 && (src.lo == 0 || src.lo>>32 == 0xffff) || dst.hi == 0 && (dst.lo == 0 || dst.lo>>32 == 0xffff) {
		return ReasonMartian, false
	}
	toOwn := false
	for _, o := range r.own6 {
		if src == o {
			return ReasonMartian, false
		}
		toOwn = toOwn || dst == o
	}
	if sourceCheck && len(r.v6) > 0 {
		if s, ok := lookup6(r.v6, src); !ok || s != dir.From() {
			return ReasonSpoofed, false
		}
	}
	if dir == Inbound && r.has6 && dst == r.nat6 {
		return 0, true
	}
	if toOwn {
		return ReasonNoRoute, false
	}
	if len(r.v6) > 0 {
		if s, ok := lookup6(r.v6, dst); !ok || s != dir.To() {
			return ReasonNoRoute, false
		}
	}
	return 0, true
}

// lookup4 and lookup6 return the side of the longest prefix holding a.
func lookup4(table []route4, a uint32) (Side, bool) {
	for i := range table {
		if a&table[i].mask == table[i].net {
			return table[i].side, true
		}
	}
	return 0, false
}

func lookup6(table []route6, a addr128) (Side, bool) {
	for i := range table {
		if a.and(table[i].mask) == table[i].net {
			return table[i].side, true
		}
	}
	return 0, false
}

// delivers reports whether a packet rewritten by NAT, leaving in dir, goes to a host
// of the side it leaves by: not to one of the gateway's own addresses, and where the
// family's networks are known, into the other side's.
func (r *routes) delivers(p *packet.Info, dir Dir) bool {
	if p.Version == 4 {
		dst := a32(p.Dst)
		if slices.Contains(r.own4, dst) {
			return false
		}
		s, ok := lookup4(r.v4, dst)
		return len(r.v4) == 0 || ok && s == dir.To()
	}
	dst := a128(p.Dst)
	if slices.Contains(r.own6, dst) {
		return false
	}
	s, ok := lookup6(r.v6, dst)
	return len(r.v6) == 0 || ok && s == dir.To()
}
