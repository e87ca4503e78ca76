package replay

import (
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// playSynthetic gives flow f, first seen at packet p in mid-stream, the opening it had
// before the capture started, in lane l at time ts: for TCP a handshake whose sequence
// numbers lead to p's, for UDP first seen inbound a datagram from the inside. The
// packets are processed but neither reported nor written.
func (rp *replayer) playSynthetic(l *lane, f *flow, p *packet.Info, ts time.Time) {
	fromInside := netip.AddrPortFrom(p.Src, p.SrcPort) == f.inside
	in, out := f.inside, f.outside
	fi := rp.flowIdx[f.key]
	switch p.Proto {
	case packet.ProtoTCP:
		var c, s uint32 // initial sequence numbers of the inside and outside ends
		hasAck := p.TCPFlags&packet.TCPAck != 0
		synAck := p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck
		switch {
		case synAck && !fromInside:
			c = p.Ack - 1
			l.synthetic(rp, buildSeg(rp.synth[0][:0], in, out, packet.ProtoTCP, packet.TCPSyn, c, 0), policy.Outbound, ts, fi)
			return
		case synAck: // a SYN-ACK from the inside: the outside opened
			s = p.Ack - 1
			l.synthetic(rp, buildSeg(rp.synth[0][:0], out, in, packet.ProtoTCP, packet.TCPSyn, s, 0), policy.Inbound, ts, fi)
			return
		case fromInside:
			c = p.Seq - 1
			if hasAck {
				s = p.Ack - 1
			}
		default:
			s = p.Seq - 1
			if hasAck {
				c = p.Ack - 1
			}
		}
		l.synthetic(rp, buildSeg(rp.synth[0][:0], in, out, packet.ProtoTCP, packet.TCPSyn, c, 0), policy.Outbound, ts, fi)
		l.synthetic(rp, buildSeg(rp.synth[1][:0], out, in, packet.ProtoTCP, packet.TCPSyn|packet.TCPAck, s, c+1), policy.Inbound, ts, fi)
		l.synthetic(rp, buildSeg(rp.synth[2][:0], in, out, packet.ProtoTCP, packet.TCPAck, c+1, s+1), policy.Outbound, ts, fi)
	case packet.ProtoUDP:
		l.synthetic(rp, buildSeg(rp.synth[0][:0], in, out, packet.ProtoUDP, 0, 0, 0), policy.Outbound, ts, fi)
	}
}

// synthetic processes a packet replay made up: it moves the lane's state (entry, NAT
// mapping) like a captured one, without settling outcomes, counting or writing.
func (l *lane) synthetic(rp *replayer, b []byte, dir policy.Dir, ts time.Time, fi int32) {
	if b == nil {
		return
	}
	if dir == policy.Inbound && l.nat {
		if packet.Decode(b, &l.info) == nil {
			l.toMapping(b, &l.info, fi, rp)
		}
	}
	res := &l.res
	l.eng.Process(b, dir, ts, res)
	l.drain(rp)
	lf := l.flow(fi)
	if res.Verdict == policy.Forward && res.Conn.Status != conntrack.Miss {
		lf.hadEntry, lf.gone = true, false
		if l.nat && dir == policy.Outbound {
			lf.mapping = res.Conn.Reply.DstAddrPort()
		}
	}
}

// buildSeg writes into dst (cap >= 60) an IPv4 or IPv6 packet from src to dstAP with a
// 20-byte TCP header (flags, seq, ack, window 65535) or an empty UDP datagram, with
// correct checksums. It returns nil if the addresses are not of one family.
func buildSeg(dst []byte, src, dstAP netip.AddrPort, proto uint8, flags uint8, seq, ack uint32) []byte {
	var b []byte
	var err error
	if proto == packet.ProtoUDP {
		b, err = packet.BuildUDP(dst, src, dstAP, nil)
	} else {
		b, err = packet.BuildTCP(dst, src, dstAP, seq, ack, flags, 65535, nil)
	}
	if err != nil {
		return nil
	}
	return b
}
