package policy

import (
	"net/netip"

	"github.com/idlegate/idlegate/packet"
)

// The gateway as a router hop: a forwarded packet's TTL (IPv4) or Hop Limit (IPv6)
// is decremented, and a packet that arrives with 1 or 0 is not forwarded but
// answered with ICMP time exceeded (RFC 1812 5.3.1, RFC 4443 3.3) from the gateway's
// own address on the side it came from, so that traceroute and mtr show the hop.
// Linux does this in ip_forward / ip6_forward: after conntrack has seen the packet
// (a live connection's state moves on) and before the forward chain's verdict (a
// packet of no connection opens none, and the orphan and invalid rules never see
// it). Policy.DecrementTTL turns all of it off.

// The lab's router addresses, the source of the time exceeded the gateway sends: on
// the inside the first address of the client network, on the outside the first of the
// server network (also the NAT address, ProfileNATAddr4 and ProfileNATAddr6). The
// kernel reference router of `make bench` has the same ones. Written here because
// policy does not import lab; a caller with other networks uses SetRouterAddrs.
const (
	RouterInsideAddr4  = "198.18.0.1"
	RouterInsideAddr6  = "fd00:18::1"
	RouterOutsideAddr4 = ProfileNATAddr4
	RouterOutsideAddr6 = ProfileNATAddr6
)

// defaultRouterAddrs are the router addresses per Side.
func defaultRouterAddrs() [2][]netip.Addr {
	return [2][]netip.Addr{
		Inside:  {netip.MustParseAddr(RouterInsideAddr4), netip.MustParseAddr(RouterInsideAddr6)},
		Outside: {netip.MustParseAddr(RouterOutsideAddr4), netip.MustParseAddr(RouterOutsideAddr6)},
	}
}

// SetRouterAddrs sets the gateway's addresses on side, at most one per IP family
// (the first of each is used): the source of the ICMP time exceeded it sends toward
// that side. Without an address of a packet's family, a packet whose TTL runs out is
// dropped unanswered. The lab's are set by NewEngine (RouterInsideAddr4, ...).
func (e *Engine) SetRouterAddrs(side Side, addrs ...netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hop[side] = append([]netip.Addr(nil), addrs...)
}

// routerAddr is the gateway's address of IP version v on side.
func (e *Engine) routerAddr(side Side, v uint8) (netip.Addr, bool) {
	for _, a := range e.hop[side] {
		if a = a.Unmap(); a.Is4() == (v == 4) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// timeExceededLocked drops a packet whose TTL ran out and answers its sender with
// ICMP time exceeded, unless the packet is one no ICMP error answers (an ICMP error,
// a later fragment, a broadcast: see packet.BuildTimeExceeded).
func (e *Engine) timeExceededLocked(pkt []byte, p *packet.Info, dir Dir, res *Result) {
	res.Verdict, res.Reason = Drop, ReasonTTLExceeded
	from, ok := e.routerAddr(dir.From(), p.Version)
	if !ok {
		return
	}
	if b, err := packet.BuildTimeExceeded(e.scratch[:], pkt, from); err == nil {
		res.add(dir.From(), b)
	}
}
