package packet

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestBuildReset(t *testing.T) {
	const c4, s4 = "192.0.2.1:40000", "198.51.100.7:8443"
	const c6, s6 = "[2001:db8::1]:40000", "[2001:db8:1::7]:8443"
	tests := []struct {
		name      string
		offending []byte
		seq, ack  uint32
		flags     uint8
	}{
		{"syn4", tcp4(c4, s4, TCPSyn, 1000, 0, nil), 0, 1001, TCPRst | TCPAck},
		{"syn4 with data", tcp4(c4, s4, TCPSyn, 1000, 0, []byte("fastopen")), 0, 1009, TCPRst | TCPAck},
		{"ack4", tcp4(c4, s4, TCPAck, 1000, 5000, nil), 5000, 0, TCPRst},
		{"data4", tcp4(c4, s4, TCPAck|TCPPsh, 1000, 5000, bytesOf(100, 0)), 5000, 0, TCPRst},
		{"fin4 without ack", tcp4(c4, s4, TCPFin, 1000, 0, bytesOf(10, 0)), 0, 1011, TCPRst | TCPAck},
		{"syn fin4", tcp4(c4, s4, TCPSyn|TCPFin, 0xffffffff, 0, nil), 0, 1, TCPRst | TCPAck},
		{"bare4 no flags", tcp4(c4, s4, 0, 7, 0, bytesOf(3, 0)), 0, 10, TCPRst | TCPAck},
		{"seq wraps4", tcp4(c4, s4, TCPPsh, 0xfffffff0, 0, bytesOf(32, 0)), 0, 0x10, TCPRst | TCPAck},
		{"ip options4", withIPv4Options(tcp4(c4, s4, TCPAck, 1, 77, nil), []byte{1, 1, 1, 0}), 77, 0, TCPRst},
		{"syn6", tcp6(c6, s6, TCPSyn, 1000, 0, nil), 0, 1001, TCPRst | TCPAck},
		{"data6", tcp6(c6, s6, TCPAck|TCPPsh, 1000, 5000, bytesOf(100, 0)), 5000, 0, TCPRst},
		{"data6 ext headers", withExt(tcp6(c6, s6, TCPAck, 1, 99, nil), hbh(1), dstopts(1)), 99, 0, TCPRst},
		{"synack6", tcp6(s6, c6, TCPSyn|TCPAck, 50, 1001, nil), 1001, 0, TCPRst},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var off Info
			if err := Decode(tc.offending, &off); err != nil {
				t.Fatal(err)
			}
			dst := make([]byte, 0, 100)
			rst, err := BuildReset(dst, tc.offending)
			if err != nil {
				t.Fatalf("BuildReset: %v", err)
			}
			if &rst[0] != &dst[:1][0] {
				t.Error("BuildReset did not write into dst")
			}
			gp := checkPacket(t, rst)
			tcp, ok := gp.TransportLayer().(*layers.TCP)
			if !ok {
				t.Fatalf("gopacket sees no TCP: %v", gp)
			}
			var gotFlags uint8
			for bit, set := range []bool{tcp.FIN, tcp.SYN, tcp.RST, tcp.PSH, tcp.ACK, tcp.URG, tcp.ECE, tcp.CWR} {
				if set {
					gotFlags |= 1 << bit
				}
			}
			src, dstA := gp.NetworkLayer().NetworkFlow().Endpoints()
			if src.String() != off.Dst.String() || dstA.String() != off.Src.String() ||
				uint16(tcp.SrcPort) != off.DstPort || uint16(tcp.DstPort) != off.SrcPort {
				t.Errorf("RST %v:%d -> %v:%d, want %v:%d -> %v:%d", src, tcp.SrcPort, dstA, tcp.DstPort, off.Dst, off.DstPort, off.Src, off.SrcPort)
			}
			if tcp.Seq != tc.seq || tcp.Ack != tc.ack || gotFlags != tc.flags || tcp.Window != 0 || len(tcp.Payload) != 0 {
				t.Errorf("RST seq %d ack %d flags %#x window %d, want seq %d ack %d flags %#x window 0",
					tcp.Seq, tcp.Ack, gotFlags, tcp.Window, tc.seq, tc.ack, tc.flags)
			}
			switch l := gp.NetworkLayer().(type) {
			case *layers.IPv4:
				if l.TTL != 64 || l.Flags != layers.IPv4DontFragment || len(rst) != ResetLen4 {
					t.Errorf("IPv4 TTL %d flags %v len %d", l.TTL, l.Flags, len(rst))
				}
			case *layers.IPv6:
				if l.HopLimit != 64 || len(rst) != ResetLen6 {
					t.Errorf("IPv6 hop limit %d len %d", l.HopLimit, len(rst))
				}
			}
			var p Info
			if err := Decode(rst, &p); err != nil || !ChecksumsValid(rst, &p) {
				t.Errorf("Decode(RST) = %v, checksums %v", err, ChecksumsValid(rst, &p))
			}
			// dst may be the offending packet's own buffer.
			inPlace := append(make([]byte, 0, 200), tc.offending...)
			rst2, err := BuildReset(inPlace, inPlace)
			if err != nil || !bytes.Equal(rst2, rst) {
				t.Errorf("BuildReset in place = %v\n% x\nwant\n% x", err, rst2, rst)
			}
		})
	}
}

func TestBuildResetRefuses(t *testing.T) {
	seg := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(100, 0))
	tests := []struct {
		name      string
		dst       []byte
		offending []byte
		want      error
	}{
		{"rst", make([]byte, 100), tcp4("192.0.2.1:1", "192.0.2.2:2", TCPRst|TCPAck, 1, 2, nil), ErrIsReset},
		{"udp", make([]byte, 100), udp4("192.0.2.1:1", "192.0.2.2:2", nil), ErrNotTCP},
		{"icmp", make([]byte, 100), echo6("2001:db8::1", "2001:db8::2", false, 1, 1, nil), ErrNotTCP},
		{"first fragment", make([]byte, 100), frag4(seg, 0, 40, true), ErrFragment},
		{"later fragment", make([]byte, 100), frag4(seg, 5, 40, false), ErrFragment},
		{"multicast destination", make([]byte, 100), tcp4("192.0.2.1:1", "224.0.0.1:2", TCPSyn, 1, 0, nil), ErrNotUnicast},
		{"broadcast destination", make([]byte, 100), tcp4("192.0.2.1:1", "255.255.255.255:2", TCPSyn, 1, 0, nil), ErrNotUnicast},
		{"unspecified source", make([]byte, 100), tcp6("[::]:1", "[2001:db8::1]:2", TCPSyn, 1, 0, nil), ErrNotUnicast},
		{"malformed", make([]byte, 100), seg[:30], ErrBadTotalLen},
		{"short buffer v4", make([]byte, 39), seg, ErrShortBuffer},
		{"short buffer v6", make([]byte, 59), tcp6("[2001:db8::1]:1", "[2001:db8::2]:2", TCPSyn, 1, 0, nil), ErrShortBuffer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := BuildReset(tc.dst, tc.offending); !errors.Is(err, tc.want) || b != nil {
				t.Errorf("BuildReset = %d bytes, %v; want %v", len(b), err, tc.want)
			}
		})
	}
}

func TestBuildRST(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		seq, ack uint32
		withAck  bool
		want     error
		wantLen  int
	}{
		{"ipv4 rst", "192.0.2.1:40000", "198.51.100.7:8443", 100, 200, false, nil, ResetLen4},
		{"ipv4 rst ack", "192.0.2.1:40000", "198.51.100.7:8443", 100, 200, true, nil, ResetLen4},
		{"ipv6 rst ack", "[2001:db8::1]:40000", "[2001:db8:1::7]:8443", 0xffffffff, 1, true, nil, ResetLen6},
		{"v4-mapped counts as ipv4", "[::ffff:192.0.2.1]:1", "198.51.100.7:2", 1, 0, false, nil, ResetLen4},
		{"family mismatch", "192.0.2.1:1", "[2001:db8::1]:2", 1, 0, false, ErrAddrFamily, 0},
		{"invalid address", "192.0.2.1:1", "", 1, 0, false, ErrAddrFamily, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dstAP netip.AddrPort
			if tc.dst != "" {
				dstAP = ap(tc.dst)
			}
			b, err := BuildRST(make([]byte, 0, 60), ap(tc.src), dstAP, tc.seq, tc.ack, tc.withAck)
			if !errors.Is(err, tc.want) || len(b) != tc.wantLen {
				t.Fatalf("BuildRST = %d bytes, %v; want %d, %v", len(b), err, tc.wantLen, tc.want)
			}
			if err != nil {
				return
			}
			gp := checkPacket(t, b)
			tcp := gp.TransportLayer().(*layers.TCP)
			wantAck := uint32(0)
			if tc.withAck {
				wantAck = tc.ack
			}
			if !tcp.RST || tcp.ACK != tc.withAck || tcp.SYN || tcp.FIN || tcp.Seq != tc.seq || tcp.Ack != wantAck ||
				uint16(tcp.SrcPort) != ap(tc.src).Port() || uint16(tcp.DstPort) != dstAP.Port() {
				t.Errorf("BuildRST made %+v", tcp)
			}
			src, dst := gp.NetworkLayer().NetworkFlow().Endpoints()
			if src.String() != ap(tc.src).Addr().Unmap().String() || dst.String() != dstAP.Addr().String() {
				t.Errorf("BuildRST %v -> %v", src, dst)
			}
		})
	}
	if _, err := BuildRST(make([]byte, 39), ap("192.0.2.1:1"), ap("192.0.2.2:2"), 1, 2, true); err != ErrShortBuffer {
		t.Errorf("BuildRST short buffer: %v", err)
	}
}

func TestBuildTCPUDP(t *testing.T) {
	payload := bytesOf(101, 3)
	for _, tc := range []struct {
		name     string
		src, dst string
	}{
		{"ipv4", "192.0.2.1:40000", "198.51.100.7:8443"},
		{"ipv6", "[2001:db8::1]:40000", "[2001:db8:1::7]:8443"},
		{"v4-mapped counts as ipv4", "[::ffff:192.0.2.1]:40000", "198.51.100.7:8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dstAP := ap(tc.src), ap(tc.dst)
			hl := 20
			if !src.Addr().Unmap().Is4() {
				hl = 40
			}
			b, err := BuildTCP(make([]byte, 0, 200), src, dstAP, 7, 9, TCPSyn|TCPAck|TCPEce, 65535, payload)
			if err != nil || len(b) != hl+20+len(payload) {
				t.Fatalf("BuildTCP = %d bytes, %v", len(b), err)
			}
			gp := checkPacket(t, b)
			tcp := gp.TransportLayer().(*layers.TCP)
			if !tcp.SYN || !tcp.ACK || !tcp.ECE || tcp.RST || tcp.Seq != 7 || tcp.Ack != 9 || tcp.Window != 65535 ||
				uint16(tcp.SrcPort) != src.Port() || uint16(tcp.DstPort) != dstAP.Port() || !bytes.Equal(tcp.Payload, payload) {
				t.Errorf("BuildTCP made %+v", tcp)
			}
			var p Info
			if err := Decode(b, &p); err != nil || !ChecksumsValid(b, &p) || p.Src != src.Addr().Unmap() || p.Dst != dstAP.Addr() {
				t.Errorf("Decode(BuildTCP) = %v, %+v", err, p)
			}

			u, err := BuildUDP(make([]byte, 0, 200), src, dstAP, payload)
			if err != nil || len(u) != hl+8+len(payload) {
				t.Fatalf("BuildUDP = %d bytes, %v", len(u), err)
			}
			gp = checkPacket(t, u)
			udp := gp.TransportLayer().(*layers.UDP)
			if int(udp.Length) != 8+len(payload) || udp.Checksum == 0 ||
				uint16(udp.SrcPort) != src.Port() || uint16(udp.DstPort) != dstAP.Port() || !bytes.Equal(udp.Payload, payload) {
				t.Errorf("BuildUDP made %+v", udp)
			}
			if err := Decode(u, &p); err != nil || !ChecksumsValid(u, &p) || p.PayloadLen != len(payload) {
				t.Errorf("Decode(BuildUDP) = %v, %+v", err, p)
			}
			switch l := gp.NetworkLayer().(type) {
			case *layers.IPv4:
				if l.TTL != 64 || l.Flags != layers.IPv4DontFragment {
					t.Errorf("IPv4 TTL %d flags %v", l.TTL, l.Flags)
				}
			case *layers.IPv6:
				if l.HopLimit != 64 {
					t.Errorf("IPv6 hop limit %d", l.HopLimit)
				}
			}

			// dst may share memory with payload.
			buf := make([]byte, 300)
			copy(buf[5:], payload)
			b2, err := BuildTCP(buf[:0], src, dstAP, 7, 9, TCPSyn|TCPAck|TCPEce, 65535, buf[5:5+len(payload)])
			if err != nil || !bytes.Equal(b2, b) {
				t.Errorf("BuildTCP over its payload = %v\n% x\nwant\n% x", err, b2, b)
			}
		})
	}
	src, dst := ap("192.0.2.1:1"), ap("192.0.2.2:2")
	if _, err := BuildUDP(make([]byte, 0, 27), src, dst, []byte{0}); err != ErrShortBuffer {
		t.Errorf("BuildUDP short buffer: %v", err)
	}
	if _, err := BuildTCP(nil, src, ap("[2001:db8::1]:2"), 0, 0, 0, 0, nil); err != ErrAddrFamily {
		t.Errorf("BuildTCP family mismatch: %v", err)
	}
	big := make([]byte, 65536)
	if _, err := BuildUDP(make([]byte, 0, 70000), src, dst, big[:65535-28+1]); err != ErrTooLong {
		t.Errorf("BuildUDP IPv4 past 65535: %v", err)
	}
	if b, err := BuildUDP(make([]byte, 0, 70000), src, dst, big[:65535-28]); err != nil || len(b) != 65535 {
		t.Errorf("BuildUDP IPv4 of 65535 bytes: %d, %v", len(b), err)
	}
	src6, dst6 := ap("[2001:db8::1]:1"), ap("[2001:db8::2]:2")
	if _, err := BuildTCP(make([]byte, 0, 70000), src6, dst6, 0, 0, 0, 0, big[:65535-20+1]); err != ErrTooLong {
		t.Errorf("BuildTCP IPv6 payload past 65535: %v", err)
	}
	if b, err := BuildTCP(make([]byte, 0, 70000), src6, dst6, 0, 0, 0, 0, big[:65535-20]); err != nil || len(b) != 40+65535 {
		t.Errorf("BuildTCP IPv6 payload of 65535 bytes: %d, %v", len(b), err)
	}
}

func TestBuildUnreachable(t *testing.T) {
	from4, from6 := ip("198.51.100.254"), ip("2001:db8:ff::1")
	syn4 := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPSyn, 1000, 0, nil)
	syn6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPSyn, 1000, 0, nil)
	big4 := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(1400, 0))
	big6 := udp6("[2001:db8::1]:40001", "[2001:db8:1::7]:5300", bytesOf(1400, 0))
	seg := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(100, 0))
	tests := []struct {
		name      string
		offending []byte
		from      netip.Addr
		capacity  int
		wantLen   int // of the whole error
		want      error
	}{
		{"syn4", syn4, from4, 1500, 28 + len(syn4), nil},
		{"syn4 with options", withIPv4Options(syn4, []byte{0x94, 4, 0, 0}), from4, 1500, 28 + len(syn4) + 4, nil},
		{"udp4 cut to 576", big4, from4, 1500, 576, nil},
		{"udp4 cut to capacity", big4, from4, 100, 100, nil},
		{"udp4 capacity for ip header and 8 bytes", big4, from4, 56, 56, nil},
		{"echo4", echo4("192.0.2.1", "198.51.100.7", false, 1, 2, nil), from4, 1500, 28 + 28, nil},
		{"first fragment4", frag4(seg, 0, 40, true), from4, 1500, 28 + 60, nil},
		{"gre4", func() []byte { b := udp4("192.0.2.1:1", "192.0.2.2:2", nil); b[9] = 47; refFixIPv4(b); return b }(), from4, 1500, 56, nil},
		{"syn6", syn6, from6, 1500, 48 + len(syn6), nil},
		{"udp6 cut to 1280", big6, from6, 1500, 1280, nil},
		{"udp6 ext headers", withExt(big6, hbh(1), dstopts(1)), from6, 1500, 1280, nil},
		{"echo6", echo6("2001:db8::1", "2001:db8:1::7", false, 1, 2, nil), from6, 1500, 48 + 48, nil},
		{"v4-mapped from", syn4, ip("::ffff:198.51.100.254"), 1500, 28 + len(syn4), nil},

		{"short buffer4", big4, from4, 55, 0, ErrShortBuffer},
		{"short buffer6", big6, from6, 95, 0, ErrShortBuffer},
		{"icmp4 error", icmp4Err("192.0.2.9", "198.51.100.7", 3, 1, syn4, 28), from4, 1500, 0, ErrICMPError},
		{"icmp4 redirect", icmp4Err("192.0.2.9", "198.51.100.7", 5, 1, syn4, 28), from4, 1500, 0, ErrICMPError},
		{"icmp4 unknown type", icmp4Err("192.0.2.9", "198.51.100.7", 40, 0, nil, 0), from4, 1500, 0, ErrICMPError},
		{"icmp6 error", icmp6Err("2001:db8::9", "2001:db8::1", 2, 0, 1280, syn6, 60), from6, 1500, 0, ErrICMPError},
		{"icmp6 unknown error type", icmp6Err("2001:db8::9", "2001:db8::1", 100, 0, 0, nil, 0), from6, 1500, 0, ErrICMPError},
		{"icmp4 cut first fragment", frag4(echo4("192.0.2.1", "198.51.100.7", false, 1, 2, bytesOf(50, 0)), 0, 0, true), from4, 1500, 0, ErrICMPError},
		{"later fragment", frag4(seg, 5, 40, false), from4, 1500, 0, ErrFragment},
		{"multicast destination", udp4("192.0.2.1:1", "239.1.2.3:2", nil), from4, 1500, 0, ErrNotUnicast},
		{"multicast source", udp6("[ff02::1]:1", "[2001:db8::1]:2", nil), from6, 1500, 0, ErrNotUnicast},
		{"broadcast", udp4("192.0.2.1:1", "255.255.255.255:2", nil), from4, 1500, 0, ErrNotUnicast},
		{"unspecified source", udp4("0.0.0.0:68", "192.0.2.2:67", nil), from4, 1500, 0, ErrNotUnicast},
		{"from family mismatch", syn4, from6, 1500, 0, ErrAddrFamily},
		{"from invalid", syn6, netip.Addr{}, 1500, 0, ErrAddrFamily},
		{"malformed", syn4[:10], from4, 1500, 0, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, 0, tc.capacity)
			b, err := BuildUnreachable(dst, tc.offending, tc.from)
			if !errors.Is(err, tc.want) || len(b) != tc.wantLen {
				t.Fatalf("BuildUnreachable = %d bytes, %v; want %d, %v", len(b), err, tc.wantLen, tc.want)
			}
			if err != nil {
				return
			}
			var off Info
			if err := Decode(tc.offending, &off); err != nil {
				t.Fatal(err)
			}
			gp := checkPacket(t, b)
			hl := 20
			switch l := gp.NetworkLayer().(type) {
			case *layers.IPv4:
				m := gp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if m.TypeCode != layers.CreateICMPv4TypeCode(3, 13) || m.Id != 0 || m.Seq != 0 ||
					l.TTL != 64 || l.TOS != 0xc0 || l.SrcIP.String() != tc.from.Unmap().String() || l.DstIP.String() != off.Src.String() {
					t.Errorf("ICMPv4 %v from %v to %v ttl %d", m.TypeCode, l.SrcIP, l.DstIP, l.TTL)
				}
			case *layers.IPv6:
				hl = 40
				m := gp.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				if m.TypeCode != layers.CreateICMPv6TypeCode(1, 1) || l.HopLimit != 64 ||
					l.SrcIP.String() != tc.from.String() || l.DstIP.String() != off.Src.String() {
					t.Errorf("ICMPv6 %v from %v to %v hop limit %d", m.TypeCode, l.SrcIP, l.DstIP, l.HopLimit)
				}
			}
			if q := b[hl+8:]; !bytes.Equal(q, tc.offending[:len(q)]) || bytes.Contains(b[hl+4:hl+8], []byte{1}) {
				t.Errorf("quote differs from the offending packet")
			}
			var p Info
			if err := Decode(b, &p); err != nil || !ChecksumsValid(b, &p) {
				t.Fatalf("Decode(error) = %v, checksums %v", err, ChecksumsValid(b, &p))
			}
			in := p.Inner
			if !p.ICMPError || !in.Valid || in.Src != off.Src || in.Dst != off.Dst || in.Proto != off.Proto ||
				in.HasPorts != off.HasL4 || in.SrcPort != off.SrcPort || in.DstPort != off.DstPort {
				t.Errorf("Decode(error).Inner = %+v, offending %+v", in, off)
			}
			if tc.capacity < len(tc.offending) {
				return
			}
			inPlace := append(make([]byte, 0, tc.capacity), tc.offending...)
			if b2, err := BuildUnreachable(inPlace, inPlace, tc.from); err != nil || !bytes.Equal(b2, b) {
				t.Errorf("BuildUnreachable in place = %v\n% x\nwant\n% x", err, b2, b)
			}
		})
	}
}
