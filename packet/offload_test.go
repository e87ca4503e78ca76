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
func toPartial(t *testing.T, pkt []byte) (start, off int) {
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
