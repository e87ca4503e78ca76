package policy

import "github.com/idlegate/idlegate/packet"

// The gateway as a router hop: a forwarded packet's TTL (IPv4) or Hop Limit (IPv6)
// is decremented, and a packet that arrives with 1 or 0 is not forwarded but
// answered with ICMP time exceeded (RFC 1812 5.3.1, RFC 4443 3.3) from the gateway's
// own address on the side it came from, so that traceroute and mtr show the hop.
// Linux does this in ip_forward / ip6_forward: after conntrack has seen the packet
// (a live connection's state moves on) and before the forward chain's verdict (a
// packet of no connection opens none, and the orphan and invalid rules never see
// it). Policy.DecrementTTL turns all of it off.

// The time exceeded comes from the gateway's own address on the side the packet came
// from, as Linux's icmp_send picks the address of the interface the error leaves by:
// of Networks.Gateway (and NAT's outside addresses), the first of the packet's family
// that is in that side's networks (route.go, routes.hop). With none there (the zero
// Networks knows no address), the packet is dropped unanswered, still as ttl-exceeded.

// timeExceededLocked drops a packet whose TTL ran out and answers its sender with
// ICMP time exceeded, unless the packet is one no ICMP error answers (an ICMP error,
// a later fragment, a broadcast: see packet.BuildTimeExceeded).
func (e *Engine) timeExceededLocked(pkt []byte, p *packet.Info, dir Dir, res *Result) {
	res.Verdict, res.Reason = Drop, ReasonTTLExceeded
	from := e.routes.hopAddr(dir.From(), p.Version)
	if !from.IsValid() {
		return
	}
	if b, err := packet.BuildTimeExceeded(e.scratch[:], pkt, from); err == nil {
		res.add(dir.From(), b)
	}
}
