package policy

import (
	"github.com/idlegate/idlegate/packet"
)

// orphanLocked applies the orphan rule to a packet of no live connection.
func (e *Engine) orphanLocked(pkt []byte, p *packet.Info, dir Dir, res *Result, why Reason) {
	switch e.pol.Orphan {
	case OrphanReset, OrphanICMP:
		e.refuseLocked(pkt, p, dir, res, why)
	default:
		res.Verdict, res.Reason = Drop, why
	}
}

// refuseLocked answers the sender: a RST for TCP (under orphan: reset or a per-source
// limit), ICMP administratively prohibited otherwise. A RST is never answered, nor is
// an ICMP message.
func (e *Engine) refuseLocked(pkt []byte, p *packet.Info, dir Dir, res *Result, why Reason) {
	res.Verdict, res.Reason = Drop, why
	if p.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPRst != 0 {
		return
	}
	if p.Proto == packet.ProtoTCP && (e.pol.Orphan != OrphanICMP || why == ReasonSourceLimit) {
		if b, err := packet.BuildReset(e.scratch[:], pkt); err == nil {
			res.Verdict = Reset
			res.add(dir.From(), b)
		}
		return
	}
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		return
	}
	if b, err := packet.BuildUnreachable(e.scratch[:], pkt, p.Dst); err == nil {
		res.Verdict = Reject
		res.add(dir.From(), b)
	}
}
