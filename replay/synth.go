package replay

import (
	"encoding/binary"
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

// buildSeg writes into dst (cap >= 68) an IPv4 or IPv6 packet from src to dstAP with a
// 20-byte TCP header (flags, seq, ack, window 65535) or an empty UDP datagram, with
// correct checksums. It returns nil if the addresses are not of one family.
func buildSeg(dst []byte, src, dstAP netip.AddrPort, proto uint8, flags uint8, seq, ack uint32) []byte {
	s, d := src.Addr().Unmap(), dstAP.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return nil
	}
	l4 := 20
	if proto == packet.ProtoUDP {
		l4 = 8
	}
	hl := 20
	if !s.Is4() {
		hl = 40
	}
	b := dst[:hl+l4]
	clear(b)
	if s.Is4() {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(hl+l4))
		b[6] = 0x40 // DF
		b[8] = 64
		b[9] = proto
		a4, b4 := s.As4(), d.As4()
		copy(b[12:16], a4[:])
		copy(b[16:20], b4[:])
		binary.BigEndian.PutUint16(b[10:], packet.Checksum(b[:20], 0))
	} else {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(l4))
		b[6] = proto
		b[7] = 64
		a6, b6 := s.As16(), d.As16()
		copy(b[8:24], a6[:])
		copy(b[24:40], b6[:])
	}
	t := b[hl:]
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dstAP.Port())
	if proto == packet.ProtoTCP {
		binary.BigEndian.PutUint32(t[4:], seq)
		binary.BigEndian.PutUint32(t[8:], ack)
		t[12] = 5 << 4
		t[13] = flags
		binary.BigEndian.PutUint16(t[14:], 65535)
		binary.BigEndian.PutUint16(t[16:], packet.Checksum(t, packet.PseudoHeaderSum(s, d, proto, l4)))
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(l4))
		binary.BigEndian.PutUint16(t[6:], packet.Checksum(t, packet.PseudoHeaderSum(s, d, proto, l4)))
	}
	return b
}
