package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// transportChecksumOff returns the offset of the transport checksum field in
// pkt, or -1.
func transportChecksumOff(p *Info) int {
	switch p.Proto {
	case ProtoTCP:
		return p.L4Off + 16
	case ProtoUDP:
		return p.L4Off + 6
	case ProtoICMP, ProtoICMPv6:
		return p.L4Off + 2
	}
	return -1
}

// endpoints reads source and destination address and port (or echo id) with
// gopacket.
func endpoints(t *testing.T, gp gopacket.Packet) (src, dst netip.AddrPort) {
	t.Helper()
	sa, da := gp.NetworkLayer().NetworkFlow().Endpoints()
	s, d := netip.MustParseAddr(sa.String()), netip.MustParseAddr(da.String())
	var sp, dp uint16
	switch l := gp.TransportLayer().(type) {
	case *layers.TCP:
		sp, dp = uint16(l.SrcPort), uint16(l.DstPort)
	case *layers.UDP:
		sp, dp = uint16(l.SrcPort), uint16(l.DstPort)
	}
	if l, ok := gp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && (l.TypeCode.Type() == 0 || l.TypeCode.Type() == 8) {
		sp, dp = l.Id, l.Id
	}
	if l, ok := gp.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo); ok {
		sp, dp = l.Identifier, l.Identifier
	}
	return netip.AddrPortFrom(s, sp), netip.AddrPortFrom(d, dp)
}

func TestSetSourceDestination(t *testing.T) {
	u4 := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(200, 1))
	u6 := udp6("[2001:db8::1]:40001", "[2001:db8:1::7]:5300", bytesOf(200, 1))
	zero4 := append([]byte(nil), u4...)
	zero4[26], zero4[27] = 0, 0
	syn4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPSyn, 1, 0, nil)
	tests := []struct {
		name      string
		pkt       []byte
		whole     []byte // the whole datagram, for a first fragment
		src, dst  netip.AddrPort
		withPorts bool
	}{
		{name: "tcp4 syn", pkt: syn4, withPorts: true},
		{name: "tcp4 data", pkt: tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(1001, 3)), withPorts: true},
		{name: "tcp4 ip options", pkt: withIPv4Options(syn4, []byte{1, 1, 1, 0}), withPorts: true},
		{name: "tcp6 data", pkt: tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck, 1, 2, bytesOf(999, 3)), withPorts: true},
		{name: "tcp6 ext headers", pkt: withExt(tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck, 1, 2, nil), hbh(1), dstopts(1), ah()), withPorts: true},
		{name: "udp4", pkt: u4, withPorts: true},
		{name: "udp4 no checksum", pkt: zero4, withPorts: true},
		{name: "udp6", pkt: u6, withPorts: true},
		{name: "echo4 request", pkt: echo4("192.0.2.1", "198.51.100.7", false, 77, 1, bytesOf(56, 0)), withPorts: true},
		{name: "echo4 reply", pkt: echo4("198.51.100.7", "192.0.2.1", true, 77, 1, bytesOf(56, 0)), withPorts: true},
		{name: "echo6 request", pkt: echo6("2001:db8::1", "2001:db8:1::7", false, 77, 1, bytesOf(56, 0)), withPorts: true},
		{name: "echo6 reply", pkt: echo6("2001:db8:1::7", "2001:db8::1", true, 77, 1, nil), withPorts: true},
		{name: "icmp4 error", pkt: icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, syn4, 28)},
		{name: "icmp6 error", pkt: icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, u6, 100)},
		{name: "udp4 first fragment", pkt: frag4(u4, 0, 96, true), whole: u4, withPorts: true},
		{name: "udp4 later fragment", pkt: frag4(u4, 12, 96, false)},
		{name: "udp6 first fragment", pkt: frag6(u6, 0, 96, true, 3), whole: u6, withPorts: true},
		{name: "udp6 later fragment", pkt: frag6(u6, 12, 96, false, 3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.pkt = bytes.Clone(tc.pkt)
			tc.whole = bytes.Clone(tc.whole)
			v6 := tc.pkt[0]>>4 == 6
			newSrc, newDst := ap("203.0.113.9:61000"), ap("10.9.8.7:7")
			if v6 {
				newSrc, newDst = ap("[2001:db8:aaaa::9]:61000"), ap("[fd00::7]:7")
			}
			for _, step := range []struct {
				name string
				set  func([]byte, *Info, netip.Addr, uint16) bool
				to   netip.AddrPort
			}{{"SetSource", SetSource, newSrc}, {"SetDestination", SetDestination, newDst}} {
				var p Info
				if err := Decode(tc.pkt, &p); err != nil {
					t.Fatal(err)
				}
				before := p
				if !step.set(tc.pkt, &p, step.to.Addr(), step.to.Port()) {
					t.Fatalf("%s = false", step.name)
				}
				var fresh Info
				if err := Decode(tc.pkt, &fresh); err != nil || fresh != p {
					t.Errorf("%s: Info after\n%+v\nDecode after\n%+v (%v)", step.name, p, fresh, err)
				}
				gp := checkPacket(t, tc.pkt)
				src, dst := endpoints(t, gp)
				got := src
				if step.name == "SetDestination" {
					got = dst
				}
				if p.Fragment { // gopacket reads no ports in fragments; take them from the fresh Decode
					port := fresh.SrcPort
					if step.name == "SetDestination" {
						port = fresh.DstPort
					}
					got = netip.AddrPortFrom(got.Addr(), port)
				}
				if got.Addr() != step.to.Addr() || tc.withPorts && got.Port() != step.to.Port() {
					t.Errorf("%s: gopacket reads %v, want %v", step.name, got, step.to)
				}
				if !tc.withPorts && (p.SrcPort != before.SrcPort || p.DstPort != before.DstPort) {
					t.Errorf("%s changed ports of a packet without them", step.name)
				}
				if tc.whole != nil {
					// The first fragment's transport checksum covers the whole
					// datagram: it must match the whole datagram rewritten
					// the same way and verified from scratch.
					var wp Info
					if err := Decode(tc.whole, &wp); err != nil || !step.set(tc.whole, &wp, step.to.Addr(), step.to.Port()) {
						t.Fatal("rewrite of the whole datagram failed")
					}
					checkPacket(t, tc.whole)
					o, wo := transportChecksumOff(&p), transportChecksumOff(&wp)
					if !bytes.Equal(tc.pkt[o:o+2], tc.whole[wo:wo+2]) {
						t.Errorf("first fragment checksum % x, whole datagram % x", tc.pkt[o:o+2], tc.whole[wo:wo+2])
					}
				}
			}
		})
	}
}

func TestSetInner(t *testing.T) {
	syn4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPSyn, 1, 0, nil)
	data4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(100, 7))
	u4 := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(30, 1))
	zero4 := append([]byte(nil), u4...)
	zero4[26], zero4[27] = 0, 0
	ping4 := echo4("192.0.2.1", "198.51.100.7", false, 77, 1, bytesOf(16, 0))
	data6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck, 1, 2, bytesOf(100, 7))
	u6 := udp6("[2001:db8::1]:40001", "[2001:db8:1::7]:5300", bytesOf(30, 1))
	ping6 := echo6("2001:db8::1", "2001:db8:1::7", false, 77, 1, bytesOf(16, 0))
	frag := frag4(data4, 0, 24, true)
	tests := []struct {
		name   string
		quoted []byte // as sent by the inside host
		n      int    // bytes quoted, -1 for all
	}{
		{"icmp4 quoting tcp4 8 bytes", data4, 28},
		{"icmp4 quoting tcp4 header", data4, 40},
		{"icmp4 quoting tcp4 whole", data4, -1},
		{"icmp4 quoting tcp4 syn whole", syn4, -1},
		{"icmp4 quoting udp4 whole", u4, -1},
		{"icmp4 quoting udp4 without checksum", zero4, -1},
		{"icmp4 quoting udp4 4 bytes", u4, 24},
		{"icmp4 quoting echo4 whole", ping4, -1},
		{"icmp4 quoting echo4 8 bytes", ping4, 28},
		{"icmp4 quoting first fragment", frag, -1},
		{"icmp4 quoting ip header only", data4, 20},
		{"icmp6 quoting tcp6 8 bytes", data6, 48},
		{"icmp6 quoting tcp6 whole", data6, -1},
		{"icmp6 quoting udp6 whole", u6, -1},
		{"icmp6 quoting echo6 whole", ping6, -1},
		{"icmp6 quoting tcp6 behind extension headers", withExt(data6, dstopts(1)), 76},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.quoted = bytes.Clone(tc.quoted)
			v6 := tc.quoted[0]>>4 == 6
			var pkt []byte
			if v6 {
				pkt = icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 4, 0, tc.quoted, tc.n)
			} else {
				pkt = icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, tc.quoted, tc.n)
			}
			newSrc, newDst := ap("203.0.113.9:61000"), ap("10.9.8.7:7")
			if v6 {
				newSrc, newDst = ap("[2001:db8:aaaa::9]:61000"), ap("[fd00::7]:7")
			}
			for _, step := range []struct {
				name     string
				set      func([]byte, *Info, netip.Addr, uint16) bool
				setWhole func([]byte, *Info, netip.Addr, uint16) bool
				to       netip.AddrPort
			}{
				{"SetInnerSource", SetInnerSource, SetSource, newSrc},
				{"SetInnerDestination", SetInnerDestination, SetDestination, newDst},
			} {
				var p Info
				if err := Decode(pkt, &p); err != nil {
					t.Fatal(err)
				}
				before := p.Inner
				if !step.set(pkt, &p, step.to.Addr(), step.to.Port()) {
					t.Fatalf("%s = false", step.name)
				}
				var fresh Info
				if err := Decode(pkt, &fresh); err != nil || fresh != p {
					t.Errorf("%s: Info after\n%+v\nDecode after\n%+v (%v)", step.name, p, fresh, err)
				}
				checkPacket(t, pkt)
				in := p.Inner
				q := pkt[in.Off:in.End]
				checkQuoted(t, q)

				// The same rewrite of the packet as sent, verified from
				// scratch, gives the same bytes wherever the quote has them.
				var wp Info
				if err := Decode(tc.quoted, &wp); err != nil || !step.setWhole(tc.quoted, &wp, step.to.Addr(), step.to.Port()) {
					t.Fatalf("rewrite of the quoted packet failed")
				}
				checkPacket(t, tc.quoted)
				if !bytes.Equal(q, tc.quoted[:len(q)]) {
					t.Errorf("%s quote\n% x\nwant\n% x", step.name, q, tc.quoted[:len(q)])
				}
				gotA, gotP := in.Src, in.SrcPort
				if step.name == "SetInnerDestination" {
					gotA, gotP = in.Dst, in.DstPort
				}
				if gotA != step.to.Addr() || in.HasPorts && gotP != step.to.Port() || !in.HasPorts && in.SrcPort != before.SrcPort {
					t.Errorf("%s: Inner %+v", step.name, in)
				}
			}
		})
	}
}

func TestRewriteRefuses(t *testing.T) {
	syn4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPSyn, 1, 0, nil)
	syn6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPSyn, 1, 0, nil)
	data4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(100, 7))
	err4 := icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, syn4, 28)
	tests := []struct {
		name string
		pkt  []byte
		edit func(p *Info) // corrupts the Info
		addr netip.Addr
		set  func([]byte, *Info, netip.Addr, uint16) bool
	}{
		{"ipv6 address into ipv4", syn4, nil, ip("2001:db8::1"), SetSource},
		{"ipv4 address into ipv6", syn6, nil, ip("192.0.2.1"), SetDestination},
		{"v4-mapped address into ipv6", syn6, nil, ip("::ffff:192.0.2.1"), SetDestination},
		{"invalid address", syn4, nil, netip.Addr{}, SetSource},
		{"inner of a non-error", syn4, nil, ip("192.0.2.1"), SetInnerSource},
		{"inner family", err4, nil, ip("2001:db8::1"), SetInnerDestination},
		{"tiny first fragment", frag4(data4, 0, 8, true), nil, ip("192.0.2.9"), SetSource},
		{"stale info: total length", syn4, func(p *Info) { p.TotalLen = 1000 }, ip("192.0.2.9"), SetSource},
		{"stale info: version", syn4, func(p *Info) { p.Version = 6 }, ip("2001:db8::9"), SetSource},
		{"stale info: l4 offset", syn4, func(p *Info) { p.L4Off = len(syn4) - 4 }, ip("192.0.2.9"), SetSource},
		{"stale info: inner offset", err4, func(p *Info) { p.Inner.Off = 40 }, ip("192.0.2.9"), SetInnerSource},
		{"stale info: inner end", err4, func(p *Info) { p.Inner.End = 1000 }, ip("192.0.2.9"), SetInnerSource},
		{"stale info: inner odd", err4, func(p *Info) { p.Inner.L4Off++ }, ip("192.0.2.9"), SetInnerSource},
		{"zero info", syn4, func(p *Info) { *p = Info{} }, ip("192.0.2.9"), SetDestination},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), tc.pkt...)
			var p Info
			if err := Decode(b, &p); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(&p)
			}
			before := p
			if tc.set(b, &p, tc.addr, 9) {
				t.Fatal("rewrite = true, want false")
			}
			if !bytes.Equal(b, tc.pkt) || p != before {
				t.Error("a refused rewrite changed the packet or the Info")
			}
		})
	}
}

// randomPacket returns a packet of a random kind with random addresses,
// ports, ids and payload, checksums right.
func randomPacket(rng *rand.Rand) (pkt []byte, kind string) {
	a4 := func() string {
		return netip.AddrFrom4([4]byte{byte(rng.IntN(223) + 1), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}).String()
	}
	a6 := func() string {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] = 0x20
		return netip.AddrFrom16(b).String()
	}
	ap4 := func() string { return fmt.Sprintf("%s:%d", a4(), rng.IntN(65536)) }
	ap6 := func() string { return fmt.Sprintf("[%s]:%d", a6(), rng.IntN(65536)) }
	payload := bytesOf(rng.IntN(300), byte(rng.Uint32()))
	u16 := func() uint16 { return uint16(rng.Uint32()) }
	inner := func(v6 bool) []byte {
		switch rng.IntN(3) {
		case 0:
			if v6 {
				return tcp6(ap6(), ap6(), uint8(rng.Uint32())&^TCPRst, rng.Uint32(), rng.Uint32(), payload)
			}
			return tcp4(ap4(), ap4(), uint8(rng.Uint32())&^TCPRst, rng.Uint32(), rng.Uint32(), payload)
		case 1:
			if v6 {
				return udp6(ap6(), ap6(), payload)
			}
			return udp4(ap4(), ap4(), payload)
		}
		if v6 {
			return echo6(a6(), a6(), rng.IntN(2) == 0, u16(), u16(), payload)
		}
		return echo4(a4(), a4(), rng.IntN(2) == 0, u16(), u16(), payload)
	}
	switch k := rng.IntN(12); k {
	case 10:
		opts := []byte{1, 1, 1, 0, 0x94, 4, 0, 0}[:4*(1+rng.IntN(2))]
		return withIPv4Options(udp4(ap4(), ap4(), payload), opts), "udp4 ip options"
	case 11:
		return withExt(tcp6(ap6(), ap6(), uint8(rng.Uint32()), rng.Uint32(), rng.Uint32(), payload), hbh(1+rng.IntN(2)), dstopts(1), ah()), "tcp6 ext headers"
	case 0:
		return tcp4(ap4(), ap4(), uint8(rng.Uint32()), rng.Uint32(), rng.Uint32(), payload), "tcp4"
	case 1:
		return tcp6(ap6(), ap6(), uint8(rng.Uint32()), rng.Uint32(), rng.Uint32(), payload), "tcp6"
	case 2:
		return udp4(ap4(), ap4(), payload), "udp4"
	case 3:
		return udp6(ap6(), ap6(), payload), "udp6"
	case 4:
		return echo4(a4(), a4(), rng.IntN(2) == 0, u16(), u16(), payload), "echo4"
	case 5:
		return echo6(a6(), a6(), rng.IntN(2) == 0, u16(), u16(), payload), "echo6"
	case 6, 7:
		q := inner(false)
		n := 20 + rng.IntN(len(q))
		return icmp4Err(a4(), a4(), []uint8{3, 11, 12}[rng.IntN(3)], uint8(rng.IntN(16)), q, n), "icmp4 error"
	default:
		q := inner(true)
		n := 40 + rng.IntN(len(q))
		return icmp6Err(a6(), a6(), uint8(1+rng.IntN(4)), uint8(rng.IntN(8)), rng.Uint32(), q, n), "icmp6 error"
	}
}

// TestRewriteMatchesRecompute applies many random rewrites to random packets
// and after each one compares every checksum with a from-scratch
// recomputation, and the updated Info with a fresh Decode.
func TestRewriteMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const packets, rewrites = 400, 25
	for i := range packets {
		pkt, kind := randomPacket(rng)
		var p Info
		if err := Decode(pkt, &p); err != nil {
			t.Fatalf("%s: Decode: %v\n% x", kind, err, pkt)
		}
		for j := range rewrites {
			var a netip.Addr
			if p.Version == 4 {
				a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
			} else {
				var b [16]byte
				for k := range b {
					b[k] = byte(rng.Uint32())
				}
				a = netip.AddrFrom16(b)
			}
			port := uint16(rng.Uint32())
			sets := []func([]byte, *Info, netip.Addr, uint16) bool{SetSource, SetDestination}
			if p.ICMPError && p.Inner.Valid {
				sets = append(sets, SetInnerSource, SetInnerDestination)
			}
			k := rng.IntN(len(sets))
			if !sets[k](pkt, &p, a, port) {
				t.Fatalf("%s #%d rewrite %d (%d) = false", kind, i, j, k)
			}
			var fresh Info
			if err := Decode(pkt, &fresh); err != nil || fresh != p {
				t.Fatalf("%s #%d rewrite %d: Info\n%+v\nDecode\n%+v (%v)", kind, i, j, p, fresh, err)
			}
			checkPacket(t, pkt)
			if p.ICMPError && p.Inner.Valid {
				checkQuoted(t, pkt[p.Inner.Off:p.Inner.End])
			}
			if t.Failed() {
				t.Fatalf("%s #%d rewrite %d (%d)\n% x", kind, i, j, k, pkt)
			}
		}
	}
}

func TestSetSourceUnmapsIPv4(t *testing.T) {
	pkt := udp4("192.0.2.1:40001", "198.51.100.7:5300", nil)
	var p Info
	if err := Decode(pkt, &p); err != nil {
		t.Fatal(err)
	}
	if !SetSource(pkt, &p, ip("::ffff:203.0.113.1"), 1) || p.Src != ip("203.0.113.1") || binary.BigEndian.Uint32(pkt[12:]) != 0xcb007101 {
		t.Errorf("SetSource with a v4-mapped address: %v", p.Src)
	}
	checkPacket(t, pkt)
}

// TestRewriteGarbageInfo hands the rewrites and ChecksumsValid Infos with
// random fields: they must refuse or succeed, never panic.
func TestRewriteGarbageInfo(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ints := []int{-1 << 62, -1, 0, 1, 7, 8, 20, 28, 40, 48, 60, 1 << 20, 1<<63 - 1}
	for range 20000 {
		pkt, _ := randomPacket(rng)
		var p Info
		if err := Decode(pkt, &p); err != nil {
			t.Fatal(err)
		}
		r := func() int {
			if rng.IntN(2) == 0 {
				return ints[rng.IntN(len(ints))]
			}
			return rng.IntN(len(pkt) + 10)
		}
		switch rng.IntN(8) {
		case 0:
			p.TotalLen = r()
		case 1:
			p.L4Off = r()
		case 2:
			p.PayloadLen = r()
		case 3:
			p.Inner.Off, p.Inner.L4Off = r(), r()
		case 4:
			p.Inner.End = r()
		case 5:
			p.Proto = uint8(rng.Uint32())
			p.HasL4 = true
		case 6:
			p.Version = uint8(rng.IntN(8))
		case 7:
			p.Inner.HasPorts, p.Inner.Valid, p.ICMPError = true, true, true
			p.Inner.Proto = uint8(rng.Uint32())
		}
		a := ip("203.0.113.1")
		if rng.IntN(2) == 0 {
			a = ip("2001:db8::1")
		}
		ChecksumsValid(pkt, &p)
		SetSource(pkt, &p, a, 1)
		SetDestination(pkt, &p, a, 2)
		SetInnerSource(pkt, &p, a, 3)
		SetInnerDestination(pkt, &p, a, 4)
	}
}

// TestUDPChecksumZeroSentAsOnes rewrites a UDP datagram whose checksum
// computes to zero after the rewrite: RFC 768 sends it as 0xffff, since zero
// means no checksum.
func TestUDPChecksumZeroSentAsOnes(t *testing.T) {
	to := ip("203.0.113.1")
	base := udp4("192.0.2.1:40001", "198.51.100.7:5300", []byte{0, 0})
	// Find the payload word that makes the rewritten datagram sum to zero.
	var u []byte
	for w := range 1 << 16 {
		c := bytes.Clone(base)
		binary.BigEndian.PutUint16(c[28:], uint16(w))
		copy(c[12:16], to.AsSlice())
		if refChecksum(refPseudo(c[12:16], c[16:20], ProtoUDP, 10), c[20:], 6) == 0 {
			u = bytes.Clone(base)
			binary.BigEndian.PutUint16(u[28:], uint16(w))
			binary.BigEndian.PutUint16(u[26:], refChecksum(refPseudo(u[12:16], u[16:20], ProtoUDP, 10), u[20:], 6))
			break
		}
	}
	if u == nil {
		t.Fatal("no payload word found")
	}
	checkPacket(t, u)
	t.Run("outer", func(t *testing.T) {
		pkt := bytes.Clone(u)
		var p Info
		if err := Decode(pkt, &p); err != nil || !SetSource(pkt, &p, to, 40001) {
			t.Fatal("SetSource failed")
		}
		if got := binary.BigEndian.Uint16(pkt[26:]); got != 0xffff {
			t.Errorf("UDP checksum %#04x, want 0xffff", got)
		}
		checkPacket(t, pkt)
	})
	t.Run("inner", func(t *testing.T) {
		pkt := icmp4Err("198.51.100.254", "198.51.100.7", 3, 3, u, -1)
		var p Info
		if err := Decode(pkt, &p); err != nil || !SetInnerSource(pkt, &p, to, 40001) {
			t.Fatal("SetInnerSource failed")
		}
		if got := binary.BigEndian.Uint16(pkt[p.Inner.L4Off+6:]); got != 0xffff {
			t.Errorf("quoted UDP checksum %#04x, want 0xffff", got)
		}
		checkPacket(t, pkt)
		checkQuoted(t, pkt[p.Inner.Off:p.Inner.End])
	})
}
