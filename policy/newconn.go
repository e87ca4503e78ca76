package policy

import (
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// The new-connection path: a TCP, UDP or ICMP echo packet is tracked; a packet of
// no live connection may open one (subject to the orphan rule, the per-source limit,
// the table's capacity and NAT), else it is an orphan (orphan.go).

func (e *Engine) trackLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	cp := &e.cp
	*cp = conntrack.Packet{
		Key:        wireKey(p),
		Len:        p.TotalLen,
		Inside:     dir == Outbound,
		TCPFlags:   p.TCPFlags,
		Seq:        p.Seq,
		Ack:        p.Ack,
		Window:     p.Window,
		PayloadLen: p.PayloadLen,
	}
	if p.TCPFlags&packet.TCPSyn != 0 && p.Proto == packet.ProtoTCP {
		cp.WScale, cp.HasWScale = packet.TCPWindowScale(pkt, p)
	}
	r := e.ctTrackLocked(now)
	switch r.Status {
	case conntrack.Hit:
		res.Conn = r
		if e.ttlOut {
			e.timeExceededLocked(pkt, p, dir, res)
			return
		}
		if !e.translate(pkt, p, &r, res) {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
		res.Verdict, res.Reason = Forward, ReasonTracked
		return
	case conntrack.Invalid:
		res.Conn = r
		if e.ttlOut {
			e.timeExceededLocked(pkt, p, dir, res)
			return
		}
		e.invalidLocked(dir, res)
		return
	}
	if e.ttlOut {
		// Linux's conntrack made an entry, but the packet died before the entry was
		// confirmed: nothing is opened.
		e.timeExceededLocked(pkt, p, dir, res)
		return
	}
	e.newLocked(pkt, p, dir, now, res)
}

// invalidLocked applies the invalid rule to a packet Linux's conntrack calls invalid.
// Accepted, it leaves as it came, untracked: not translated (Linux's NAT skips a
// packet without a conntrack, which is why a NAT leaks them without `ct state invalid
// drop`). An inbound one under NAT is addressed to the NAT address, which a Linux
// router would take for itself: it is dropped.
func (e *Engine) invalidLocked(dir Dir, res *Result) {
	res.Verdict, res.Reason = Drop, ReasonInvalid
	if e.pol.Invalid == InvalidAccept && !(e.pol.NAT.Enabled && dir == Inbound) {
		res.Verdict = Forward
	}
}

// linuxInvalid says whether a packet of no connection that may not open one is what
// Linux's conntrack calls invalid, for the invalid rule, rather than an orphan, for
// the orphan rule: a TCP flag combination tcp_error refuses, always; and under
// orphan: pickup, the kernel's own behaviour, whatever it cannot pick up (a FIN, an
// RST, a SYN-ACK, an echo reply: tcp_new and icmp_packet refuse them).
func (e *Engine) linuxInvalid(p *packet.Info) bool {
	if p.Proto == packet.ProtoTCP && !conntrack.ValidFlags(p.TCPFlags) {
		return true
	}
	return e.pol.Orphan == OrphanPickup
}

// mayOpen says whether a packet of no live connection may open one, and whether as a
// mid-stream pickup.
func (e *Engine) mayOpen(p *packet.Info, dir Dir) (open, pickup bool) {
	switch p.Proto {
	case packet.ProtoTCP:
		if conntrack.CanOpen(p.TCPFlags, false) {
			return true, false
		}
		pickup := e.pol.Orphan == OrphanPickup
		return pickup && conntrack.CanOpen(p.TCPFlags, true), true
	case packet.ProtoUDP:
		if dir == Outbound {
			return true, false
		}
		return e.pol.Orphan == OrphanPickup, false
	default: // ICMP echo: a request opens, a reply never does
		return !p.ICMPEchoReply, false
	}
}

func (e *Engine) newLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) {
	if len(e.adopt) > 0 && p.Proto == packet.ProtoTCP && e.adoptLocked(pkt, p, dir, now, res) {
		return
	}
	natted := e.pol.NAT.Enabled
	if natted && dir == Inbound {
		e.inboundNATLocked(pkt, p, now, res)
		return
	}
	open, pickup := e.mayOpen(p, dir)
	if !open {
		if e.linuxInvalid(p) {
			e.invalidLocked(dir, res)
			return
		}
		e.orphanLocked(pkt, p, dir, res, ReasonOrphan)
		return
	}
	src := p.Src
	limit := e.pol.MaxConnsPerSource
	if limit > 0 && dir == Outbound && e.perSource[src] >= limit {
		e.refuseLocked(pkt, p, dir, res, ReasonSourceLimit)
		return
	}
	reply := e.cp.Key.Reply()
	if natted {
		out, ok := e.pol.NAT.outside(p.Version == 4)
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoAddress
			return
		}
		port, ok := e.nat.allocate(e.cp.Key, out)
		if !ok {
			res.Verdict, res.Reason = Drop, ReasonNATNoPorts
			return
		}
		reply = natReply(e.cp.Key, out, port)
	}
	r := e.ctCreateLocked(now, reply, pickup)
	res.Conn = r
	if !e.created(pkt, p, dir, res, &r) {
		return
	}
	if natted {
		e.nat.bind(e.cp.Key, reply)
	}
	if limit > 0 && dir == Outbound {
		e.perSource[src]++
		e.counted[r.Orig] = src
	}
	if !e.translate(pkt, p, &r, res) {
		res.Verdict, res.Reason = Drop, ReasonNATNoAddress
		return
	}
	res.Verdict, res.Reason = Forward, ReasonNew
	if pickup {
		res.Reason = ReasonPickup
	}
}

// created checks the outcome of Create and, unless an entry was created, sets the
// verdict: the table was full, the reply tuple was taken (NAT), or the table found
// the packet unfit to open a connection (an orphan after all). Never forward then:
// there is no entry to translate by.
func (e *Engine) created(pkt []byte, p *packet.Info, dir Dir, res *Result, r *conntrack.Result) bool {
	switch r.Status {
	case conntrack.Created:
		return true
	case conntrack.Full:
		res.Verdict, res.Reason = Drop, ReasonTableFull
	case conntrack.Clash:
		res.Verdict, res.Reason = Drop, ReasonNATNoPorts
	default:
		// Track found no entry under e.mu, so Create cannot find one either; mayOpen
		// and Create share conntrack.CanOpen, so this is a packet that may not open.
		res.Conn = conntrack.Result{}
		e.orphanLocked(pkt, p, dir, res, ReasonOrphan)
	}
	return false
}

// inboundNATLocked handles an inbound packet of no live connection under NAT: only a
// mapping whose filtering admits the sender lets it in; it never creates a mapping.
func (e *Engine) inboundNATLocked(pkt []byte, p *packet.Info, now time.Time, res *Result) {
	m, ok := e.nat.lookup(p.Proto, p.Dst, wireKey(p).DstPort)
	if !ok {
		e.orphanLocked(pkt, p, Inbound, res, ReasonNATNoMapping)
		return
	}
	if !e.nat.admits(m, p.Src, p.SrcPort) {
		e.orphanLocked(pkt, p, Inbound, res, ReasonNATFiltered)
		return
	}
	open, pickup := e.mayOpen(p, Outbound) // the mapping was opened from inside: inbound may start a flow on it
	if !open {
		if e.linuxInvalid(p) {
			e.invalidLocked(Inbound, res)
			return
		}
		e.orphanLocked(pkt, p, Inbound, res, ReasonOrphan)
		return
	}
	remotePort := wireKey(p).SrcPort
	if p.ICMPEcho {
		remotePort = m.inside.Port() // an echo tuple carries the id in both port fields
	}
	reply := conntrack.MakeKey(p.Proto, m.inside, netip.AddrPortFrom(p.Src, remotePort))
	r := e.ctCreateLocked(now, reply, pickup)
	res.Conn = r
	if !e.created(pkt, p, Inbound, res, &r) {
		return
	}
	e.nat.addRef(m, p.Src)
	if !e.translate(pkt, p, &r, res) {
		res.Verdict, res.Reason = Drop, ReasonNATNoAddress
		return
	}
	res.Verdict, res.Reason = Forward, ReasonNew
}
