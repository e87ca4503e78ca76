package policy

import (
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// Address translation of live connections' packets, and of ICMP errors about them.

// translate rewrites a packet of a live connection so that it leaves looking like the
// inverse of the other direction's tuple: the generic NAT rule, noted in
// res.Translated. Without NAT both tuples mirror each other and nothing changes.
func (e *Engine) translate(pkt []byte, p *packet.Info, r *conntrack.Result, res *Result) bool {
	var want conntrack.Key
	if r.Dir == conntrack.Original {
		want = r.Reply.Reply()
	} else {
		want = r.Orig.Reply()
	}
	have := e.cp.Key
	if want == have {
		return true
	}
	res.Translated = true
	if want.Src != have.Src || want.SrcPort != have.SrcPort {
		if !packet.SetSource(pkt, p, want.SrcAddr(), want.SrcPort) {
			return false
		}
	}
	if want.Dst != have.Dst || want.DstPort != have.DstPort {
		if !packet.SetDestination(pkt, p, want.DstAddr(), want.DstPort) {
			return false
		}
	}
	return true
}

// relatedLocked forwards an ICMP error about a live connection, translating the
// quoted packet and the outer address under NAT. It does not refresh the connection
// (RFC 5508 REQ-10, RFC 7857 section 3.4).
func (e *Engine) relatedLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	if !p.Inner.Valid || !p.Inner.HasPorts {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	in := p.Inner
	inner := conntrack.MakeKey(in.Proto, netip.AddrPortFrom(in.Src, in.SrcPort), netip.AddrPortFrom(in.Dst, in.DstPort))
	// A plain entry owns both directions of its tuple; a NAT entry owns exactly its
	// original and reply tuples, of which the quoted packet is one's inverse.
	ref, _, ok := e.ctLookupLocked(inner, now)
	if !ok {
		ref, _, ok = e.ctLookupLocked(inner.Reply(), now)
	}
	if !ok {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	ent, ok := e.table.Get(ref)
	if !ok {
		res.Verdict, res.Reason = Drop, ReasonOrphan
		return
	}
	res.Conn = conntrack.Result{Status: conntrack.Hit, Ref: ref, Orig: ent.Orig, Reply: ent.Reply, State: ent.State, OldState: ent.State}
	if ent.Reply != ent.Orig.Reply() {
		switch inner {
		case ent.Reply.Reply():
			// The quoted packet left in the original direction, translated; the error
			// goes back to the original sender, untranslated.
			o := ent.Orig
			ok = packet.SetInnerSource(pkt, p, o.SrcAddr(), o.SrcPort) &&
				packet.SetInnerDestination(pkt, p, o.DstAddr(), o.DstPort) &&
				packet.SetDestination(pkt, p, o.SrcAddr(), 0)
		case ent.Orig.Reply():
			rp := ent.Reply
			ok = packet.SetInnerSource(pkt, p, rp.SrcAddr(), rp.SrcPort) &&
				packet.SetInnerDestination(pkt, p, rp.DstAddr(), rp.DstPort) &&
				packet.SetSource(pkt, p, rp.DstAddr(), 0)
		default:
			// The quote is the entry's reply tuple as it arrives, not the inverse of
			// either: no packet the gateway sent (Linux finds no conntrack for it).
			res.Conn = conntrack.Result{}
			res.Verdict, res.Reason = Drop, ReasonOrphan
			return
		}
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
		// An error about a packet of the other way (one that never left toward the
		// error's sender) would leave still addressed to the gateway.
		if !e.routes.delivers(p, dir) {
			res.Conn = conntrack.Result{}
			res.Verdict, res.Reason = Drop, ReasonNoRoute
			return
		}
		res.Translated = true
	}
	res.Verdict, res.Reason = Forward, ReasonRelated
}

// natReply is the reply tuple of a connection with original tuple orig leaving from
// outside address out and port (the echo id for ICMP).
func natReply(orig conntrack.Key, out netip.Addr, port uint16) conntrack.Key {
	rport := orig.DstPort
	if orig.Proto == packet.ProtoICMP || orig.Proto == packet.ProtoICMPv6 {
		rport = port
	}
	return conntrack.MakeKey(orig.Proto, netip.AddrPortFrom(orig.DstAddr(), rport), netip.AddrPortFrom(out, port))
}
