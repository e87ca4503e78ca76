package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// toPartial turns a packet with a complete TCP or UDP checksum into what a
// Linux sender hands a device with checksum offload: the field holds the
// folded pseudo-header sum (addresses, protocol, transport length), computed
// here byte by byte with the reference code.
func toPartial(t testing.TB, pkt []byte) (start, off int) {
	t.Helper()
	var p Info
	if err := Decode(pkt, &p); err != nil {
		t.Fatal(err)
	}
	start = p.L4Off
	off = 16
	if p.Proto == ProtoUDP {
		off = 6
	}
	src, dst := p.Src.AsSlice(), p.Dst.AsSlice()
	ps := refPseudo(src, dst, p.Proto, p.TotalLen-p.L4Off)
	binary.BigEndian.PutUint16(pkt[start+off:], ^refSum(ps))
	return start, off
}

func offloadCases() []struct {
	name string
	pkt  func() []byte
} {
	payload := bytesOf(999, 7) // odd: the last word is padded
	return []struct {
		name string
		pkt  func() []byte
	}{
		{"tcp4", func() []byte { return tcp4("198.18.0.2:40000", "198.19.0.2:5201", TCPAck|TCPPsh, 1000, 2000, payload) }},
		{"tcp6", func() []byte { return tcp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", TCPAck, 1000, 2000, payload) }},
		{"udp4", func() []byte { return udp4("198.18.0.2:40000", "198.19.0.2:5201", payload) }},
		{"udp6", func() []byte { return udp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", payload) }},
	}
}

func TestCompleteChecksum(t *testing.T) {
	for _, tc := range offloadCases() {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.pkt()
			got := append([]byte(nil), want...)
			start, off := toPartial(t, got)
			if !CompleteChecksum(got, start, off) {
				t.Fatal("CompleteChecksum refused a packet")
			}
			if !bytes.Equal(got, want) {
				t.Errorf("completed checksum %#04x, gopacket's %#04x",
					binary.BigEndian.Uint16(got[start+off:]), binary.BigEndian.Uint16(want[start+off:]))
			}
			checkPacket(t, got)
		})
	}
	if CompleteChecksum(make([]byte, 30), 20, 16) {
		t.Error("CompleteChecksum accepted a field past the packet")
	}
}

// TestPartialChecksumNAT: a partial checksum hidden, rewritten by the NAT
// functions (both ends, address and port), revealed and completed equals the
// checksum gopacket computes from scratch for the rewritten packet.
func TestPartialChecksumNAT(t *testing.T) {
	for _, tc := range offloadCases() {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tc.pkt()
			start, off := toPartial(t, pkt)
			if !HidePartialChecksum(pkt, start, off) {
				t.Fatal("HidePartialChecksum refused a packet")
			}
			var p Info
			if err := Decode(pkt, &p); err != nil {
				t.Fatal(err)
			}
			newSrc, newDst := ip("198.19.0.1"), ip("198.19.0.77")
			if p.Version == 6 {
				newSrc, newDst = ip("fd00:19::1"), ip("fd00:19::77")
			}
			if !SetSource(pkt, &p, newSrc, 1024) || !SetDestination(pkt, &p, newDst, 8080) {
				t.Fatal("rewrite refused")
			}
			if !RevealPartialChecksum(pkt, start, off) {
				t.Fatal("RevealPartialChecksum refused a packet")
			}
			// What a sender would have handed over for the rewritten packet.
			partial := append([]byte(nil), pkt...)
			toPartial(t, partial)
			if got, want := binary.BigEndian.Uint16(pkt[start+off:]), binary.BigEndian.Uint16(partial[start+off:]); got != want && got^want != 0xffff {
				t.Errorf("revealed partial checksum %#04x, want %#04x (the new pseudo header's sum)", got, want)
			}
			CompleteChecksum(pkt, start, off)
			checkPacket(t, pkt)
		})
	}
}

// TestHiddenPartialNeverZero: the hidden form is never the UDP "no checksum"
// value, whatever the sum, so a UDP rewrite always patches it.
func TestHiddenPartialNeverZero(t *testing.T) {
	pkt := udp4("198.18.0.2:1", "198.19.0.2:2", []byte("x"))
	start, off := 20, 6
	for v := range 0x10000 {
		binary.BigEndian.PutUint16(pkt[start+off:], uint16(v))
		HidePartialChecksum(pkt, start, off)
		if binary.BigEndian.Uint16(pkt[start+off:]) == 0 {
			t.Fatalf("partial %#04x hides as zero", v)
		}
	}
}

func TestSegmentTCP(t *testing.T) {
	payload := bytesOf(10000, 3)
	const mss = 1448
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4", tcp4("198.18.0.2:40000", "198.19.0.2:5201", TCPAck|TCPPsh|TCPFin|TCPCwr, 0xfffff000, 77, payload)},
		{"ipv6", tcp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", TCPAck|TCPPsh|TCPFin|TCPCwr, 0xfffff000, 77, payload)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			super := tc.pkt
			l4 := 20
			if super[0]>>4 == 6 {
				l4 = 40
			}
			toPartial(t, super) // Segment must not read it
			g := GSO{Proto: ProtoTCP, L4Off: l4, Size: mss}
			n, err := Segments(super, g)
			if want := (len(payload) + mss - 1) / mss; err != nil || n != want {
				t.Fatalf("Segments = %d, %v; want %d", n, err, want)
			}
			var got []byte
			dst := make([]byte, 2000)
			for i := range n {
				m, err := Segment(dst, super, g, i)
				if err != nil {
					t.Fatalf("segment %d: %v", i, err)
				}
				seg := dst[:m]
				gp := checkPacket(t, seg)
				tcp := gp.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if want := uint32(0xfffff000) + uint32(i*mss); tcp.Seq != want {
					t.Errorf("segment %d seq %#x, want %#x", i, tcp.Seq, want)
				}
				last := i == n-1
				if tcp.FIN != last || tcp.PSH != last || tcp.CWR != (i == 0) || !tcp.ACK {
					t.Errorf("segment %d flags FIN %v PSH %v CWR %v ACK %v", i, tcp.FIN, tcp.PSH, tcp.CWR, tcp.ACK)
				}
				if ip4, ok := gp.NetworkLayer().(*layers.IPv4); ok && ip4.Id != 0x1234+uint16(i) {
					t.Errorf("segment %d IPv4 id %#x, want %#x", i, ip4.Id, 0x1234+i)
				}
				if !last && len(tcp.Payload) != mss {
					t.Errorf("segment %d carries %d bytes, want %d", i, len(tcp.Payload), mss)
				}
				got = append(got, tcp.Payload...)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("segments carry %d bytes that differ from the %d sent", len(got), len(payload))
			}
			if _, err := Segment(dst, super, g, n); err == nil {
				t.Error("segment past the last one accepted")
			}
			if _, err := Segment(dst[:100], super, g, 0); err == nil {
				t.Error("segment into a short buffer accepted")
			}
		})
	}
}

func TestSegmentUDP(t *testing.T) {
	payload := bytesOf(3000, 5)
	for _, tc := range []struct {
		name string
		pkt  []byte
		l4   int
	}{
		{"ipv4", udp4("198.18.0.2:40000", "198.19.0.2:5201", payload), 20},
		{"ipv6", udp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", payload), 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := GSO{Proto: ProtoUDP, L4Off: tc.l4, Size: 1200}
			n, err := Segments(tc.pkt, g)
			if err != nil || n != 3 {
				t.Fatalf("Segments = %d, %v; want 3", n, err)
			}
			var got []byte
			dst := make([]byte, 1500)
			for i := range n {
				m, err := Segment(dst, tc.pkt, g, i)
				if err != nil {
					t.Fatal(err)
				}
				gp := checkPacket(t, dst[:m])
				u := gp.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if int(u.Length) != 8+len(u.Payload) {
					t.Errorf("segment %d UDP length %d, carries %d", i, u.Length, len(u.Payload))
				}
				got = append(got, u.Payload...)
			}
			if !bytes.Equal(got, payload) {
				t.Error("datagrams do not carry the super-packet's payload")
			}
		})
	}
}

func TestSegmentRejects(t *testing.T) {
	tcp := tcp4("198.18.0.2:1", "198.19.0.2:2", TCPAck, 1, 1, bytesOf(100, 1))
	for _, tc := range []struct {
		name string
		pkt  []byte
		g    GSO
	}{
		{"zero size", tcp, GSO{Proto: ProtoTCP, L4Off: 20, Size: 0}},
		{"protocol differs from the header", tcp, GSO{Proto: ProtoUDP, L4Off: 20, Size: 50}},
		{"transport inside the IP header", tcp, GSO{Proto: ProtoTCP, L4Off: 10, Size: 50}},
		{"transport past the end", tcp[:30], GSO{Proto: ProtoTCP, L4Off: 20, Size: 50}},
		{"ICMP", echo4("198.18.0.2", "198.19.0.2", false, 1, 1, nil), GSO{Proto: ProtoICMP, L4Off: 20, Size: 50}},
		{"empty", nil, GSO{Proto: ProtoTCP, L4Off: 20, Size: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Segments(tc.pkt, tc.g); err == nil {
				t.Error("Segments accepted it")
			}
			if _, err := Segment(make([]byte, 2000), tc.pkt, tc.g, 0); err == nil {
				t.Error("Segment accepted it")
			}
		})
	}
}

func BenchmarkHideRevealPartial(b *testing.B) {
	pkt := tcp4("198.18.0.2:40000", "198.19.0.2:5201", TCPAck, 1, 2, bytesOf(1400, 1))
	b.ReportAllocs()
	for b.Loop() {
		HidePartialChecksum(pkt, 20, 16)
		RevealPartialChecksum(pkt, 20, 16)
	}
}

func TestPartialChecksumProto(t *testing.T) {
	tcp4p := tcp4("198.18.0.2:40000", "198.19.0.2:5201", TCPAck, 1, 2, bytesOf(100, 1))
	tcp6p := tcp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", TCPAck, 1, 2, bytesOf(100, 1))
	udp4p := udp4("198.18.0.2:40000", "198.19.0.2:5201", bytesOf(100, 1))
	udp6p := udp6("[fd00:18::2]:40000", "[fd00:19::2]:5201", bytesOf(100, 1))
	opts4 := withIPv4Options(tcp4p, []byte{0x94, 4, 0, 0})
	ext6 := withExt(udp6p, hbh(1))
	badIHL := bytes.Clone(tcp4p)
	badIHL[0] = 0x44
	for _, tc := range []struct {
		name       string
		pkt        []byte
		start, off int
		want       uint8 // 0: not ok
	}{
		{"tcp4", tcp4p, 20, 16, ProtoTCP},
		{"tcp6", tcp6p, 40, 16, ProtoTCP},
		{"udp4", udp4p, 20, 6, ProtoUDP},
		{"udp6", udp6p, 40, 6, ProtoUDP},
		{"ipv4 options", opts4, 24, 16, ProtoTCP},
		{"ipv4 options, start at 20", opts4, 20, 16, 0},
		{"ipv6 extension header", ext6, 48, 6, 0},
		{"ipv6 extension header, start at 40", ext6, 40, 6, 0},
		{"UDP offset on TCP", tcp4p, 20, 6, 0},
		{"TCP offset on UDP", udp4p, 20, 16, 0},
		{"start inside the transport header", tcp4p, 24, 12, 0},
		{"negative start", tcp4p, -20, 36, 0},
		{"bad IHL", badIHL, 16, 16, 0},
		{"TCP header cut", tcp4p[:39], 20, 16, 0},
		{"UDP header cut", udp6p[:47], 40, 6, 0},
		{"IPv4 header cut", tcp4p[:19], 20, 16, 0},
		{"ICMP", echo4("198.18.0.2", "198.19.0.2", false, 1, 1, nil), 20, 2, 0},
		{"other version", []byte{0x55, 0, 0, 20, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 20, 16, 0},
		{"empty", nil, 20, 16, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PartialChecksumProto(tc.pkt, tc.start, tc.off)
			if ok != (tc.want != 0) || got != tc.want {
				t.Fatalf("PartialChecksumProto = %d, %v; want %d", got, ok, tc.want)
			}
			if !ok {
				return
			}
			// It is the checksum the NAT rewrites patch: that of the
			// transport header Decode finds.
			var p Info
			if err := Decode(tc.pkt, &p); err != nil || p.L4Off != tc.start || p.Proto != got {
				t.Errorf("Decode finds %d at %d (%v)", p.Proto, p.L4Off, err)
			}
		})
	}
}

func TestGSOCsumOffset(t *testing.T) {
	for _, tc := range []struct {
		proto uint8
		want  int
	}{{ProtoTCP, 16}, {ProtoUDP, 6}, {ProtoICMP, -1}} {
		if got := (GSO{Proto: tc.proto}).CsumOffset(); got != tc.want {
			t.Errorf("GSO{Proto: %d}.CsumOffset() = %d, want %d", tc.proto, got, tc.want)
		}
	}
}

// partialDatagram returns the UDP datagram pkt as a device reads it with
// checksum offload and hides it (the pseudo-header sum in the field, in the
// form HidePartialChecksum gives) in a buffer of capacity room, and where the
// partial checksum lies.
func partialDatagram(t testing.TB, pkt []byte, room int) (b []byte, start, off int) {
	t.Helper()
	b = append(make([]byte, 0, max(room, len(pkt))), pkt...)
	start, off = toPartial(t, b)
	if !HidePartialChecksum(b, start, off) {
		t.Fatal("HidePartialChecksum refused a datagram")
	}
	return b, start, off
}

// checkSuper checks that super-packet super, described by g, is whole once its
// partial checksum is completed, and that Segment cuts it into datagrams
// carrying payloads, in order, each with right checksums.
func checkSuper(t *testing.T, super []byte, g GSO, payloads [][]byte) {
	t.Helper()
	whole := bytes.Clone(super)
	if !RevealPartialChecksum(whole, g.L4Off, g.CsumOffset()) || !CompleteChecksum(whole, g.L4Off, g.CsumOffset()) {
		t.Fatal("the super-packet's partial checksum is not where g says")
	}
	checkPacket(t, whole)
	n, err := Segments(super, g)
	if err != nil || n != len(payloads) {
		t.Fatalf("Segments = %d, %v; want %d", n, err, len(payloads))
	}
	dst := make([]byte, 65535)
	for i := range n {
		m, err := Segment(dst, super, g, i)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		gp := checkPacket(t, dst[:m])
		u := gp.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !bytes.Equal(u.Payload, payloads[i]) {
			t.Errorf("segment %d carries % x, want % x", i, u.Payload, payloads[i])
		}
	}
}

func TestUDPCoalescer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dgram func(payload []byte) []byte
		l4    int
	}{
		{"ipv4", func(p []byte) []byte { return udp4("198.18.0.2:4000", "198.19.0.2:5201", p) }, 20},
		{"ipv4 options", func(p []byte) []byte {
			return withIPv4Options(udp4("198.18.0.2:4000", "198.19.0.2:5201", p), []byte{0x94, 4, 0, 0})
		}, 24},
		{"ipv6", func(p []byte) []byte { return udp6("[fd00:18::2]:4000", "[fd00:19::2]:5201", p) }, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var payloads [][]byte
			for i := range 5 {
				payloads = append(payloads, bytesOf(100, byte(i)))
			}
			payloads = append(payloads, bytesOf(40, 5)) // a shorter last one ends the run
			var c UDPCoalescer
			first, start, off := partialDatagram(t, tc.dgram(payloads[0]), 65535)
			if start != tc.l4 || !c.Begin(first, start, off) {
				t.Fatalf("Begin refused the first datagram (UDP at %d)", start)
			}
			for i, p := range payloads[1:] {
				b, start, off := partialDatagram(t, tc.dgram(p), 0)
				if !c.Append(b, start, off) {
					t.Fatalf("Append refused datagram %d", i+1)
				}
			}
			after, start, off := partialDatagram(t, tc.dgram(bytesOf(10, 9)), 0)
			if c.Append(after, start, off) {
				t.Error("Append took a datagram after a shorter one")
			}
			if c.Len() != len(payloads) {
				t.Errorf("Len = %d, want %d", c.Len(), len(payloads))
			}
			super, g := c.Finish()
			if want := (GSO{Proto: ProtoUDP, L4Off: tc.l4, Size: 100}); g != want {
				t.Errorf("GSO %+v, want %+v", g, want)
			}
			if &super[0] != &first[0] || len(super) != tc.l4+8+540 {
				t.Errorf("super-packet of %d bytes, not in the first datagram's buffer", len(super))
			}
			if c.Len() != 0 {
				t.Error("Finish did not empty the coalescer")
			}
			checkSuper(t, super, g, payloads)
		})
	}
}

// TestUDPCoalescerRefuses: what may not begin a run or follow its first
// datagram (IPv4 UDP with DF and a 100-byte payload) is refused, and the run is
// left as it was.
func TestUDPCoalescerRefuses(t *testing.T) {
	src, dst := "198.18.0.2:4000", "198.19.0.2:5201"
	dgram := func(n int) []byte { return udp4(src, dst, bytesOf(n, 1)) }
	dgram6 := func() []byte { return udp6("[fd00:18::2]:4000", "[fd00:19::2]:5201", bytesOf(100, 1)) }
	opts := func(o byte) []byte { return withIPv4Options(dgram(100), []byte{0x94, 4, 0, o}) }
	// ipv4 changes an IPv4 header and fixes its checksum.
	ipv4 := func(f func(b []byte)) func(b []byte) {
		return func(b []byte) { f(b); refFixIPv4(b) }
	}
	for _, tc := range []struct {
		name      string
		first     []byte       // nil: dgram(100)
		next      []byte       // nil: dgram(100)
		mod       func([]byte) // changes next after its checksum is made partial
		start     int          // 0: where toPartial puts it
		off       int
		beginsRun bool // next may begin a run of its own
	}{
		{name: "other source port", next: udp4("198.18.0.2:4001", dst, bytesOf(100, 1)), beginsRun: true},
		{name: "other destination", next: udp4(src, "198.19.0.3:5201", bytesOf(100, 1)), beginsRun: true},
		{name: "other TTL", mod: ipv4(func(b []byte) { b[8] = 63 }), beginsRun: true},
		{name: "other TOS", mod: ipv4(func(b []byte) { b[1] = 0x10 }), beginsRun: true},
		{name: "other IPv4 options", first: opts(1), next: opts(2), beginsRun: true},
		{name: "IPv4 options after none", next: opts(0), beginsRun: true},
		{name: "longer payload", next: dgram(101), beginsRun: true},
		{name: "no payload", next: dgram(0)},
		{name: "without DF", mod: ipv4(func(b []byte) { b[6] = 0 })},
		{name: "fragment", mod: ipv4(func(b []byte) { b[6] = 0x60 })},
		{name: "IP length past the datagram", mod: ipv4(func(b []byte) { b[3]++ })},
		{name: "UDP length short of the datagram", mod: func(b []byte) { b[25]-- }},
		{name: "trailing byte", next: append(dgram(100), 0)},
		{name: "partial checksum not UDP's", start: 20, off: 16},
		{name: "partial checksum past the IP header", start: 24, off: 6},
		{name: "TCP", next: tcp4(src, dst, TCPAck, 1, 1, bytesOf(100, 1))},
		{name: "IPv6 after IPv4", next: dgram6(), beginsRun: true},
		{name: "other flow label", first: dgram6(), next: dgram6(), mod: func(b []byte) { b[3]++ }, beginsRun: true},
		{name: "other hop limit", first: dgram6(), next: dgram6(), mod: func(b []byte) { b[7]-- }, beginsRun: true},
		{name: "other traffic class", first: dgram6(), next: dgram6(), mod: func(b []byte) { b[1] ^= 0x10 }, beginsRun: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.first == nil {
				tc.first = dgram(100)
			}
			if tc.next == nil {
				tc.next = dgram(100)
			}
			first, fstart, foff := partialDatagram(t, tc.first, 65535)
			was := bytes.Clone(first)
			next, start, off := partialDatagram(t, tc.next, 0)
			if tc.mod != nil {
				tc.mod(next)
			}
			if tc.start != 0 {
				start, off = tc.start, tc.off
			}
			var c UDPCoalescer
			if !c.Begin(first, fstart, foff) {
				t.Fatal("Begin refused the first datagram")
			}
			if c.Append(next, start, off) {
				t.Fatal("Append took it")
			}
			if c.Len() != 1 || !bytes.Equal(first[:cap(first)][:len(was)], was) {
				t.Error("a refused Append changed the run")
			}
			if super, g := c.Finish(); !bytes.Equal(super, was) || g != (GSO{}) {
				t.Errorf("Finish of one datagram: %d bytes, %+v; want it unchanged and no GSO", len(super), g)
			}
			var c2 UDPCoalescer
			if c2.Begin(next, start, off) != tc.beginsRun {
				t.Errorf("Begin = %v, want %v", !tc.beginsRun, tc.beginsRun)
			}
		})
	}
	t.Run("no room", func(t *testing.T) {
		first, start, off := partialDatagram(t, dgram(100), 128+99)
		next, _, _ := partialDatagram(t, dgram(100), 0)
		var c UDPCoalescer
		if !c.Begin(first, start, off) || c.Append(next, start, off) {
			t.Error("Append took a payload past the first datagram's capacity")
		}
	})
	t.Run("empty coalescer", func(t *testing.T) {
		next, start, off := partialDatagram(t, dgram(100), 0)
		var c UDPCoalescer
		if c.Append(next, start, off) {
			t.Error("Append took a datagram without Begin")
		}
		if super, g := c.Finish(); super != nil || g != (GSO{}) {
			t.Error("Finish of an empty coalescer returned a packet")
		}
	})
}

// TestUDPCoalescerLimits: a run stops at 64 datagrams and at 65535 bytes.
func TestUDPCoalescerLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload int
		want    int
	}{
		{"64 datagrams", 10, 64},
		{"65535 bytes", 1400, (65535 - 28) / 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c UDPCoalescer
			first, start, off := partialDatagram(t, udp4("198.18.0.2:4000", "198.19.0.2:5201", bytesOf(tc.payload, 0)), 1<<17)
			c.Begin(first, start, off)
			payloads := [][]byte{bytesOf(tc.payload, 0)}
			for i := 1; i < 100; i++ {
				p := bytesOf(tc.payload, byte(i))
				b, start, off := partialDatagram(t, udp4("198.18.0.2:4000", "198.19.0.2:5201", p), 0)
				if !c.Append(b, start, off) {
					break
				}
				payloads = append(payloads, p)
			}
			if c.Len() != tc.want {
				t.Fatalf("run of %d datagrams, want %d", c.Len(), tc.want)
			}
			super, g := c.Finish()
			if len(super) > 65535 {
				t.Fatalf("super-packet of %d bytes", len(super))
			}
			checkSuper(t, super, g, payloads)
		})
	}
}

func BenchmarkCoalesceUDP(b *testing.B) {
	first, start, off := partialDatagram(b, udp4("198.18.0.2:4000", "198.19.0.2:5201", bytesOf(1200, 0)), 65535)
	var next [][]byte
	for i := 1; i < 32; i++ {
		d, _, _ := partialDatagram(b, udp4("198.18.0.2:4000", "198.19.0.2:5201", bytesOf(1200, byte(i))), 0)
		next = append(next, d)
	}
	hdr := bytes.Clone(first)
	b.ReportAllocs()
	b.SetBytes(32 * 1200)
	for b.Loop() {
		first = append(first[:0], hdr...)
		var c UDPCoalescer
		c.Begin(first, start, off)
		for _, d := range next {
			c.Append(d, start, off)
		}
		if _, g := c.Finish(); g.Size != 1200 {
			b.Fatal("no run")
		}
	}
}
