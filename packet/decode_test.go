package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// gopacketInfo derives the Info that Decode should fill for a whole
// (unfragmented) packet from gopacket's decoding of it.
func gopacketInfo(t *testing.T, pkt []byte) Info {
	t.Helper()
	gp := checkPacket(t, pkt)
	var w Info
	switch l := gp.NetworkLayer().(type) {
	case *layers.IPv4:
		w.Version = 4
		w.Src, w.Dst = netip.AddrFrom4([4]byte(l.SrcIP.To4())), netip.AddrFrom4([4]byte(l.DstIP.To4()))
		w.Proto = uint8(l.Protocol)
		w.TotalLen = int(l.Length)
		w.FragID = uint32(l.Id)
		w.L4Off = len(l.Contents)
	case *layers.IPv6:
		w.Version = 6
		w.Src, w.Dst = netip.AddrFrom16([16]byte(l.SrcIP)), netip.AddrFrom16([16]byte(l.DstIP))
		w.TotalLen = 40 + int(l.Length)
		w.Proto = uint8(l.NextHeader)
		w.L4Off = 40
	}
	for _, l := range gp.Layers() {
		switch l := l.(type) {
		case *layers.IPv6HopByHop:
			w.Proto = uint8(l.NextHeader)
			w.L4Off += len(l.Contents)
		case *layers.IPv6Destination:
			w.Proto = uint8(l.NextHeader)
			w.L4Off += len(l.Contents)
		case *layers.IPv6Routing:
			w.Proto = uint8(l.NextHeader)
			w.L4Off += len(l.Contents)
		case *layers.IPv6Fragment:
			w.Proto = uint8(l.NextHeader)
			w.L4Off += len(l.Contents)
			w.FragID = l.Identification
		case *layers.IPSecAH:
			w.Proto = uint8(l.NextHeader)
			w.L4Off += len(l.Contents)
		case *layers.TCP:
			w.HasL4 = true
			w.SrcPort, w.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
			w.Seq, w.Ack, w.Window = l.Seq, l.Ack, l.Window
			w.PayloadLen = len(l.Payload)
			for bit, set := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK, l.URG, l.ECE, l.CWR} {
				if set {
					w.TCPFlags |= 1 << bit
				}
			}
		case *layers.UDP:
			w.HasL4 = true
			w.SrcPort, w.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
			w.PayloadLen = int(l.Length) - 8
		case *layers.ICMPv4:
			w.HasL4 = true
			w.ICMPType, w.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
			switch w.ICMPType {
			case layers.ICMPv4TypeEchoRequest, layers.ICMPv4TypeEchoReply:
				w.ICMPEcho, w.ICMPEchoReply = true, w.ICMPType == layers.ICMPv4TypeEchoReply
				w.ICMPID, w.SrcPort, w.DstPort = l.Id, l.Id, l.Id
			case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
				w.ICMPError = true
			}
		case *layers.ICMPv6:
			w.HasL4 = true
			w.ICMPType, w.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
			w.ICMPError = w.ICMPType >= 1 && w.ICMPType <= 4
		case *layers.ICMPv6Echo:
			w.ICMPEcho, w.ICMPEchoReply = true, w.ICMPType == layers.ICMPv6TypeEchoReply
			w.ICMPID, w.SrcPort, w.DstPort = l.Identifier, l.Identifier, l.Identifier
		}
	}
	return w
}

// quoted returns the Inner that an ICMP error carrying pkt cut to n bytes
// should decode to, reading the quoted packet with gopacket.
func quoted(t *testing.T, outerL4Off int, pkt []byte, n int) Inner {
	t.Helper()
	w := gopacketInfo(t, pkt)
	if n > len(pkt) || n < 0 {
		n = len(pkt)
	}
	in := Inner{
		Valid: true, Off: outerL4Off + 8, L4Off: outerL4Off + 8 + w.L4Off, End: outerL4Off + 8 + n,
		Src: w.Src, Dst: w.Dst, Proto: w.Proto,
	}
	if n >= w.L4Off+4 && (w.Proto == ProtoTCP || w.Proto == ProtoUDP) {
		in.HasPorts, in.SrcPort, in.DstPort = true, w.SrcPort, w.DstPort
	}
	if n >= w.L4Off+8 && w.ICMPEcho {
		in.HasPorts, in.SrcPort, in.DstPort = true, w.ICMPID, w.ICMPID
	}
	return in
}

func TestDecode(t *testing.T) {
	syn4 := tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPSyn, 1000, 0, nil)
	data6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:443", TCPAck|TCPPsh, 7, 9, bytesOf(100, 1))
	udp4big := udp4("192.0.2.1:5353", "198.51.100.7:53", bytesOf(1000, 2))
	udp6big := udp6("[2001:db8::1]:5353", "[2001:db8:1::7]:53", bytesOf(1000, 3))
	ping4 := echo4("192.0.2.1", "198.51.100.7", false, 0x4242, 1, bytesOf(56, 0))
	ping6 := echo6("2001:db8::1", "2001:db8:1::7", false, 0x4343, 1, bytesOf(56, 0))

	tests := []struct {
		name string
		pkt  []byte
		// fix adjusts the expectation gopacketInfo derives: fragment and
		// inner fields, which gopacket does not decode.
		fix func(t *testing.T, w *Info)
		// want, if set, replaces gopacketInfo for packets gopacket cannot read.
		want *Info
	}{
		{name: "tcp4 syn", pkt: syn4},
		{name: "tcp4 data", pkt: tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPAck|TCPPsh, 1, 2, bytesOf(500, 9))},
		{name: "tcp4 fin", pkt: tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPAck|TCPFin, 1, 2, nil)},
		{name: "tcp4 rst", pkt: tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPRst, 1, 0, nil)},
		{name: "tcp4 ip options", pkt: withIPv4Options(tcp4("192.0.2.1:1", "198.51.100.7:2", TCPAck, 1, 2, []byte("x")), []byte{0x94, 4, 0, 0, 1, 1, 1, 0})},
		{name: "tcp4 all flags", pkt: tcp4("192.0.2.1:1", "198.51.100.7:2", 0xff, 1, 2, nil)},
		{name: "tcp6 syn", pkt: tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:443", TCPSyn, 5, 0, nil)},
		{name: "tcp6 data", pkt: data6},
		{name: "tcp6 hbh dstopts", pkt: withExt(data6, hbh(1), dstopts(2))},
		{name: "tcp6 routing", pkt: withExt(data6, routing0())},
		{name: "tcp6 ah", pkt: withExt(data6, ah())},
		{
			name: "tcp6 atomic fragment", pkt: withExt(data6, fragHdr(0, false, 77)),
			fix: func(t *testing.T, w *Info) {
				*w = gopacketInfo(t, data6)
				w.L4Off, w.TotalLen, w.FragID = w.L4Off+8, w.TotalLen+8, 77
			},
		},
		{name: "udp4", pkt: udp4("192.0.2.1:5353", "198.51.100.7:53", []byte("query"))},
		{name: "udp4 empty", pkt: udp4("192.0.2.1:5353", "198.51.100.7:53", nil)},
		{name: "udp6", pkt: udp6("[2001:db8::1]:5353", "[2001:db8:1::7]:53", []byte("query"))},
		{name: "echo4 request", pkt: ping4},
		{name: "echo4 reply", pkt: echo4("198.51.100.7", "192.0.2.1", true, 0x4242, 1, bytesOf(56, 0))},
		{name: "echo6 request", pkt: ping6},
		{name: "echo6 reply", pkt: echo6("2001:db8:1::7", "2001:db8::1", true, 0x4343, 1, nil)},
		{
			name: "icmp4 unreachable quoting tcp4 (28 bytes)",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 3, 1, syn4, 28),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 20, syn4, 28) },
		},
		{
			name: "icmp4 unreachable quoting tcp4 (whole)",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 3, 4, syn4, -1),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 20, syn4, -1) },
		},
		{
			name: "icmp4 time exceeded quoting udp4",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 11, 0, udp4big, 548),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 20, udp4big, 548) },
		},
		{
			name: "icmp4 parameter problem quoting echo4",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 12, 0, ping4, 28),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 20, ping4, 28) },
		},
		{
			name: "icmp4 quote too short for ports",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, syn4, 22),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 20, syn4, 22) },
		},
		{
			name: "icmp4 quote too short for header",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, syn4, 19),
			fix:  func(t *testing.T, w *Info) { w.Inner = Inner{Off: 28} },
		},
		{
			name: "icmp4 quoting ipv6",
			pkt:  icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, data6, 48),
			fix:  func(t *testing.T, w *Info) { w.Inner = Inner{Off: 28} },
		},
		{
			name: "icmp6 unreachable quoting tcp6",
			pkt:  icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 4, 0, data6, 48),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 40, data6, 48) },
		},
		{
			name: "icmp6 packet too big quoting udp6",
			pkt:  icmp6Err("2001:db8:ff::1", "2001:db8::1", 2, 0, 1280, udp6big, 1232),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 40, udp6big, 1232) },
		},
		{
			name: "icmp6 time exceeded quoting echo6",
			pkt:  icmp6Err("2001:db8:ff::1", "2001:db8::1", 3, 0, 0, ping6, -1),
			fix:  func(t *testing.T, w *Info) { w.Inner = quoted(t, 40, ping6, -1) },
		},
		{
			name: "icmp6 quoting tcp6 behind extension headers",
			pkt:  icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, withExt(data6, hbh(1), fragHdr(0, false, 5)), 72),
			fix: func(t *testing.T, w *Info) {
				w.Inner = quoted(t, 40, data6, 56)
				w.Inner.L4Off += 16
				w.Inner.End += 16
			},
		},
		{
			name: "icmp6 quote cut inside extension headers",
			pkt:  icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, withExt(data6, hbh(2)), 50),
			fix:  func(t *testing.T, w *Info) { w.Inner = Inner{Off: 48} },
		},
		{
			name: "tcp6 behind esp",
			pkt: func() []byte {
				b := withExt(data6, dstopts(1))
				b[40] = ProtoESP
				return b
			}(),
			want: &Info{Version: 6, Src: ip("2001:db8::1"), Dst: ip("2001:db8:1::7"), Proto: ProtoESP, L4Off: 48, TotalLen: len(data6) + 8},
		},
		{
			name: "no next header",
			pkt: func() []byte {
				b := append([]byte(nil), data6[:40]...)
				b[4], b[5], b[6] = 0, 0, ProtoNoNext
				return b
			}(),
			want: &Info{Version: 6, Src: ip("2001:db8::1"), Dst: ip("2001:db8:1::7"), Proto: ProtoNoNext, L4Off: 40, TotalLen: 40},
		},
		{
			name: "gre4 unknown protocol",
			pkt: func() []byte {
				b := udp4("192.0.2.1:1", "192.0.2.2:2", nil)
				b[9] = 47
				refFixIPv4(b)
				return b
			}(),
			fix: func(t *testing.T, w *Info) {
				w.Proto, w.HasL4, w.SrcPort, w.DstPort, w.PayloadLen = 47, false, 0, 0, 0
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want Info
			if tc.want != nil {
				want = *tc.want
			} else {
				want = gopacketInfo(t, tc.pkt)
			}
			if tc.fix != nil {
				tc.fix(t, &want)
			}
			var got Info
			if err := Decode(tc.pkt, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != want {
				t.Errorf("Decode =\n%+v\nwant\n%+v", got, want)
			}
			if !ChecksumsValid(tc.pkt, &got) {
				t.Errorf("ChecksumsValid = false")
			}
			// Trailing bytes past the IP length change nothing.
			padded := append(append([]byte(nil), tc.pkt...), 0xde, 0xad, 0xbe, 0xef)
			var p2 Info
			if err := Decode(padded, &p2); err != nil || p2 != got {
				t.Errorf("Decode(padded) = %v,\n%+v", err, p2)
			}
		})
	}
}

func TestDecodeFragments(t *testing.T) {
	u4 := udp4("192.0.2.1:5353", "198.51.100.7:53", bytesOf(100, 1))
	t4 := tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPAck, 1, 2, bytesOf(100, 1))
	u6 := udp6("[2001:db8::1]:5353", "[2001:db8:1::7]:53", bytesOf(100, 1))
	t6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:443", TCPAck, 1, 2, bytesOf(100, 1))
	tests := []struct {
		name             string
		pkt              []byte
		proto            uint8
		l4Off            int
		fragOff          uint16
		more, hasL4      bool
		sport, dport     uint16
		payloadLen       int
		fragID           uint32
		wantErr, notFrag bool
	}{
		{name: "udp4 first", pkt: frag4(u4, 0, 48, true), proto: ProtoUDP, l4Off: 20, more: true, hasL4: true, sport: 5353, dport: 53, payloadLen: 40, fragID: 0x1234},
		{name: "udp4 last", pkt: frag4(u4, 6, 100, false), proto: ProtoUDP, l4Off: 20, fragOff: 6, fragID: 0x1234},
		{name: "udp4 middle", pkt: frag4(u4, 2, 16, true), proto: ProtoUDP, l4Off: 20, fragOff: 2, more: true, fragID: 0x1234},
		{name: "tcp4 first with whole header", pkt: frag4(t4, 0, 24, true), proto: ProtoTCP, l4Off: 20, more: true, hasL4: true, sport: 40000, dport: 443, payloadLen: 4, fragID: 0x1234},
		{name: "tcp4 tiny first fragment", pkt: frag4(t4, 0, 8, true), proto: ProtoTCP, l4Off: 20, more: true, fragID: 0x1234},
		{name: "tcp4 second", pkt: frag4(t4, 1, 200, false), proto: ProtoTCP, l4Off: 20, fragOff: 1, fragID: 0x1234},
		{name: "udp6 first", pkt: frag6(u6, 0, 48, true, 9), proto: ProtoUDP, l4Off: 48, more: true, hasL4: true, sport: 5353, dport: 53, payloadLen: 40, fragID: 9},
		{name: "udp6 last", pkt: frag6(u6, 6, 100, false, 9), proto: ProtoUDP, l4Off: 48, fragOff: 6, fragID: 9},
		{name: "tcp6 tiny first", pkt: frag6(t6, 0, 16, true, 10), proto: ProtoTCP, l4Off: 48, more: true, fragID: 10},
		{name: "tcp6 second", pkt: frag6(t6, 2, 200, false, 10), proto: ProtoTCP, l4Off: 48, fragOff: 2, fragID: 10},
		{name: "tcp6 atomic", pkt: frag6(t6, 0, 200, false, 11), proto: ProtoTCP, l4Off: 48, hasL4: true, sport: 40000, dport: 443, payloadLen: 100, fragID: 11, notFrag: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkPacket(t, tc.pkt)
			var p Info
			if err := Decode(tc.pkt, &p); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if p.Fragment == tc.notFrag || p.Proto != tc.proto || p.L4Off != tc.l4Off || p.FragOffset != tc.fragOff ||
				p.MoreFrags != tc.more || p.HasL4 != tc.hasL4 || p.SrcPort != tc.sport || p.DstPort != tc.dport ||
				p.PayloadLen != tc.payloadLen || p.FragID != tc.fragID || p.TotalLen != len(tc.pkt) {
				t.Errorf("Decode = %+v", p)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	good4 := tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPAck, 1, 2, []byte("hello"))
	good6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:443", TCPAck, 1, 2, []byte("hello"))
	goodU4 := udp4("192.0.2.1:1", "192.0.2.2:2", []byte("hello"))
	ping4 := echo4("192.0.2.1", "192.0.2.2", false, 1, 1, nil)
	// mod4 returns good (IPv4) changed by f, header checksum fixed.
	mod := func(good []byte, f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		if b[0]>>4 == 4 && len(b) >= 20 && int(b[0]&0xf)*4 <= len(b) && b[0]&0xf >= 5 {
			refFixIPv4(b)
		}
		return b
	}
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 0", []byte{0x05}, ErrBadVersion},
		{"version 5", mod(good4, func(b []byte) { b[0] = 0x55 }), ErrBadVersion},
		{"ipv4 one byte", []byte{0x45}, ErrTruncated},
		{"ipv4 19 bytes", good4[:19], ErrTruncated},
		{"ipv4 ihl 4", mod(good4, func(b []byte) { b[0] = 0x44 }), ErrBadHeaderLen},
		{"ipv4 ihl 0", mod(good4, func(b []byte) { b[0] = 0x40 }), ErrBadHeaderLen},
		{"ipv4 ihl past buffer", mod(good4[:24], func(b []byte) { b[0] = 0x47 }), ErrBadHeaderLen},
		{"ipv4 total length past buffer", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1)) }), ErrBadTotalLen},
		{"ipv4 total length below header", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), ErrBadTotalLen},
		{"ipv4 total length zero", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 0) }), ErrBadTotalLen},
		{"ipv4 buffer cut", good4[:len(good4)-1], ErrBadTotalLen},
		{"ipv4 fragment past 65535", mod(good4, func(b []byte) { binary.BigEndian.PutUint16(b[6:], 0x1fff) }), ErrBadFragment},
		{"tcp4 header cut", mod(good4[:30], func(b []byte) { binary.BigEndian.PutUint16(b[2:], 30) }), ErrTruncated},
		{"tcp4 data offset 4", mod(good4, func(b []byte) { b[32] = 0x40 }), ErrBadDataOffset},
		{"tcp4 data offset 0", mod(good4, func(b []byte) { b[32] = 0x00 }), ErrBadDataOffset},
		{"tcp4 data offset past segment", mod(good4, func(b []byte) { b[32] = 0xf0 }), ErrBadDataOffset},
		{"udp4 header cut", mod(goodU4[:25], func(b []byte) { binary.BigEndian.PutUint16(b[2:], 25) }), ErrTruncated},
		{"udp4 length 7", mod(goodU4, func(b []byte) { binary.BigEndian.PutUint16(b[24:], 7) }), ErrBadUDPLen},
		{"udp4 length past payload", mod(goodU4, func(b []byte) { binary.BigEndian.PutUint16(b[24:], 14) }), ErrBadUDPLen},
		{"icmp4 header cut", mod(ping4[:27], func(b []byte) { binary.BigEndian.PutUint16(b[2:], 27) }), ErrTruncated},
		{"ipv6 39 bytes", good6[:39], ErrTruncated},
		{"ipv6 version 4 in ipv6 body", mod(good6, func(b []byte) { b[0] = 0x40 }), ErrBadHeaderLen},
		{"ipv6 payload length past buffer", mod(good6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], uint16(len(b))) }), ErrBadTotalLen},
		{"ipv6 buffer cut", good6[:len(good6)-1], ErrBadTotalLen},
		{"ipv6 tcp header cut", mod(good6[:50], func(b []byte) { binary.BigEndian.PutUint16(b[4:], 10) }), ErrTruncated},
		{"ipv6 ext header past packet", mod(withExt(good6, hbh(1)), func(b []byte) { b[41] = 40 }), ErrBadExtHeader},
		{"ipv6 ext header cut", mod(withExt(good6, dstopts(1))[:44], func(b []byte) { binary.BigEndian.PutUint16(b[4:], 4) }), ErrBadExtHeader},
		{"ipv6 hop-by-hop not first", withExt(good6, dstopts(1), hbh(1)), ErrBadExtHeader},
		{"ipv6 two fragment headers", withExt(good6, fragHdr(0, true, 1), fragHdr(0, true, 1)), ErrBadExtHeader},
		{"ipv6 ah past packet", mod(withExt(good6, ah()), func(b []byte) { b[41] = 200 }), ErrBadExtHeader},
		{"ipv6 fragment past 65535", withExt(good6, fragHdr(0x1fff, false, 1)), ErrBadFragment},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Info
			if err := Decode(tc.pkt, &p); !errors.Is(err, tc.want) {
				t.Errorf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestIPv4HeaderChecksumValid(t *testing.T) {
	good := tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPSyn, 1, 0, nil)
	opts := withIPv4Options(good, []byte{1, 1, 1, 0})
	bad := bytes.Clone(good)
	bad[10] ^= 0x01
	badL4 := bytes.Clone(good)
	badL4[len(badL4)-3] ^= 0x01 // the TCP checksum: not the header's business
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"good", good, true},
		{"options", opts, true},
		{"bad header checksum", bad, false},
		{"bad TCP checksum", badL4, true},
		{"IHL past the buffer", append([]byte{0x4f}, good[1:20]...), false},
		{"IHL below 5", append([]byte{0x44}, good[1:]...), false},
		{"short", good[:19], false},
		{"empty", nil, false},
		{"IPv6", tcp6("[2001:db8::1]:1", "[2001:db8::2]:2", TCPSyn, 1, 0, nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IPv4HeaderChecksumValid(tc.b); got != tc.want {
				t.Errorf("IPv4HeaderChecksumValid = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestViews(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		pkt := withIPv4Options(tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPSyn, 1, 0, nil), []byte{1, 1, 1, 0})
		pkt[1] = 0xb8
		binary.BigEndian.PutUint16(pkt[6:], 0x4000)
		refFixIPv4(pkt)
		v, err := parseIPv4(append(pkt, 1, 2, 3))
		if err != nil {
			t.Fatal(err)
		}
		g := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default).NetworkLayer().(*layers.IPv4)
		if v.headerLen() != int(g.IHL)*4 || v.totalLen() != int(g.Length) || len(v) != len(pkt) ||
			v.id() != g.Id || !v.dontFragment() || v.moreFragments() || v.isFragment() ||
			v.fragOffset() != g.FragOffset || v.ttl() != g.TTL || v.protocol() != uint8(g.Protocol) ||
			v.checksum() != g.Checksum || !v.checksumValid() || calculateIPv4Checksum(v) != g.Checksum ||
			v.src() != ip("192.0.2.1") || v.dst() != ip("198.51.100.7") ||
			len(v.options()) != 4 || len(v.payload()) != len(g.Payload) {
			t.Errorf("IPv4 view disagrees with gopacket %+v", g)
		}
		v.setChecksum(1)
		if v.checksum() != 1 || v.checksumValid() {
			t.Error("setChecksum")
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		pkt := withExt(tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:443", TCPSyn, 1, 0, nil), hbh(1), fragHdr(0, true, 99))
		pkt[0], pkt[1] = 0x6a, 0xb1
		v, err := parseIPv6(append(pkt, 0))
		if err != nil {
			t.Fatal(err)
		}
		g := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default).NetworkLayer().(*layers.IPv6)
		c, err := v.chain()
		if err != nil {
			t.Fatal(err)
		}
		if v.payloadLen() != int(g.Length) ||
			v.nextHeader() != uint8(g.NextHeader) || v.hopLimit() != g.HopLimit || len(v) != len(pkt) ||
			v.src() != ip("2001:db8::1") || v.dst() != ip("2001:db8:1::7") || len(v.payload()) != len(pkt)-40 {
			t.Errorf("IPv6 view disagrees with gopacket %+v", g)
		}
		want := ipv6Chain{Proto: ProtoTCP, Off: 56, HasFrag: true, FragHdrOff: 48, MoreFrags: true, FragID: 99}
		if c != want {
			t.Errorf("chain = %+v, want %+v", c, want)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		pkt := tcp4("192.0.2.1:40000", "198.51.100.7:443", TCPSyn|TCPEce|TCPCwr, 123456, 654321, []byte("abc"))
		v, err := parseTCP(pkt[20:])
		if err != nil {
			t.Fatal(err)
		}
		g := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default).TransportLayer().(*layers.TCP)
		if v.srcPort() != uint16(g.SrcPort) || v.dstPort() != uint16(g.DstPort) || v.seq() != g.Seq || v.ack() != g.Ack ||
			v.headerLen() != int(g.DataOffset)*4 || v.flags() != TCPSyn|TCPEce|TCPCwr || v.window() != g.Window ||
			v.checksum() != g.Checksum || len(v.options()) != v.headerLen()-20 ||
			string(v.payload()) != "abc" {
			t.Errorf("TCP view disagrees with gopacket %+v", g)
		}
	})
	t.Run("udp", func(t *testing.T) {
		pkt := udp6("[2001:db8::1]:5353", "[2001:db8:1::7]:53", []byte("abc"))
		v, err := parseUDP(append(pkt[40:], 9, 9))
		if err != nil {
			t.Fatal(err)
		}
		g := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default).TransportLayer().(*layers.UDP)
		if v.srcPort() != uint16(g.SrcPort) || v.dstPort() != uint16(g.DstPort) || v.length() != int(g.Length) ||
			v.checksum() != g.Checksum || string(v.payload()) != "abc" {
			t.Errorf("UDP view disagrees with gopacket %+v", g)
		}
	})
	t.Run("icmpv4", func(t *testing.T) {
		pkt := echo4("192.0.2.1", "192.0.2.2", true, 0x1234, 0x5678, []byte("abc"))
		v, err := parseICMP(pkt[20:])
		if err != nil {
			t.Fatal(err)
		}
		g := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if v.typ() != g.TypeCode.Type() || v.code() != g.TypeCode.Code() || v.checksum() != g.Checksum ||
			v.id() != g.Id || v.seq() != g.Seq || !v.isEcho(4) || !v.isEchoReply(4) || v.isError(4) ||
			string(v.body()) != "abc" {
			t.Errorf("ICMPv4 view disagrees with gopacket %+v", g)
		}
		e, _ := parseICMP(icmp4Err("192.0.2.9", "192.0.2.1", 11, 0, pkt, 28)[20:])
		if !e.isError(4) || len(e.body()) != 28 || e.isEcho(4) {
			t.Errorf("ICMPv4 error view: %v %d", e.isError(4), len(e.body()))
		}
		// Type numbers differ between the versions.
		if e.isError(6) || v.isEcho(6) {
			t.Error("ICMPv4 types read as ICMPv6")
		}
	})
	t.Run("icmpv6", func(t *testing.T) {
		pkt := echo6("2001:db8::1", "2001:db8::2", false, 0x1234, 0x5678, []byte("abc"))
		v, err := parseICMP(pkt[40:])
		if err != nil {
			t.Fatal(err)
		}
		if v.typ() != 128 || v.code() != 0 || v.id() != 0x1234 || v.seq() != 0x5678 || !v.isEcho(6) ||
			v.isEchoReply(6) || v.isError(6) || string(v.body()) != "abc" {
			t.Errorf("ICMPv6 view wrong")
		}
		e, _ := parseICMP(icmp6Err("2001:db8::9", "2001:db8::1", 2, 0, 1400, pkt, 48)[40:])
		if !e.isError(6) || len(e.body()) != 48 || binary.BigEndian.Uint32(e[4:]) != 1400 || e.checksum() == 0 {
			t.Errorf("ICMPv6 error view wrong")
		}
		if v.isEcho(4) {
			t.Error("ICMPv6 echo read as ICMPv4")
		}
	})
	t.Run("short", func(t *testing.T) {
		if _, err := parseTCP(make([]byte, 19)); err != ErrTruncated {
			t.Errorf("parseTCP: %v", err)
		}
		if _, err := parseUDP(make([]byte, 7)); err != ErrTruncated {
			t.Errorf("parseUDP: %v", err)
		}
		if _, err := parseICMP(make([]byte, 7)); err != ErrTruncated {
			t.Errorf("parseICMP: %v", err)
		}
		if _, err := parseIPv6(make([]byte, 40)); err != ErrBadVersion {
			t.Errorf("parseIPv6: %v", err)
		}
	})
}

// calculateIPv4Checksum returns the header checksum of h computed with the
// Header Checksum field read as zero.
func calculateIPv4Checksum(h ipv4Packet) uint16 {
	h = h[:h.headerLen()]
	return Checksum(h[ipv4Checksum+2:], sum(h[:ipv4Checksum], 0))
}
