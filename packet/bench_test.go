package packet

import (
	"net/netip"
	"testing"
)

func BenchmarkDecodeTCP4(b *testing.B) {
	pkt := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck|TCPPsh, 1, 2, bytesOf(1400, 0))
	var p Info
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(pkt, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTCP6(b *testing.B) {
	pkt := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck|TCPPsh, 1, 2, bytesOf(1400, 0))
	var p Info
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(pkt, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeICMPError6(b *testing.B) {
	inner := withExt(tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck, 1, 2, nil), hbh(1))
	pkt := icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, inner, -1)
	var p Info
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(pkt, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetSource rewrites the source of a TCP/IPv4 segment back and
// forth between two endpoints, as source NAT does.
func BenchmarkSetSource(b *testing.B) {
	pkt := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck|TCPPsh, 1, 2, bytesOf(1400, 0))
	var p Info
	if err := Decode(pkt, &p); err != nil {
		b.Fatal(err)
	}
	addrs := [2]netip.AddrPort{ap("203.0.113.1:61000"), ap("192.0.2.1:40000")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := addrs[i&1]
		if !SetSource(pkt, &p, a.Addr(), a.Port()) {
			b.Fatal("SetSource = false")
		}
		i++
	}
}

func BenchmarkSetSource6(b *testing.B) {
	pkt := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck|TCPPsh, 1, 2, bytesOf(1400, 0))
	var p Info
	if err := Decode(pkt, &p); err != nil {
		b.Fatal(err)
	}
	addrs := [2]netip.AddrPort{ap("[2001:db8:ffff::1]:61000"), ap("[2001:db8::1]:40000")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := addrs[i&1]
		if !SetSource(pkt, &p, a.Addr(), a.Port()) {
			b.Fatal("SetSource = false")
		}
		i++
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := bytesOf(1500, 3)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Checksum(buf, 0)
	}
}

func BenchmarkBuildReset(b *testing.B) {
	pkt := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPSyn, 1, 0, nil)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildReset(dst, pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildUnreachable(b *testing.B) {
	pkt := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(1400, 0))
	dst := make([]byte, 0, 1500)
	from := ip("198.51.100.254")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildUnreachable(dst, pkt, from); err != nil {
			b.Fatal(err)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	tcp := tcp4("192.0.2.1:40000", "198.51.100.7:8443", TCPAck, 1, 2, bytesOf(100, 0))
	tcpv6 := withExt(tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:8443", TCPAck, 1, 2, nil), hbh(1), fragHdr(0, false, 1))
	u6 := udp6("[2001:db8::1]:40001", "[2001:db8:1::7]:5300", bytesOf(100, 0))
	icmpErr := icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, tcp, 48)
	icmpErr6 := icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, u6, -1)
	ping := echo6("2001:db8::1", "2001:db8:1::7", false, 7, 1, nil)
	bad := tcp[:30]
	a4, b4 := ip("203.0.113.1"), ip("203.0.113.2")
	a6, b6 := ip("2001:db8:ffff::1"), ip("2001:db8:ffff::2")
	dst := make([]byte, 0, 1500)
	var p Info
	d1 := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(100, 0))
	run := append(make([]byte, 0, 1500), d1...)
	seg := make([]byte, 1500)
	var co UDPCoalescer
	tests := []struct {
		name string
		f    func()
	}{
		{"Decode tcp4", func() { _ = Decode(tcp, &p) }},
		{"Decode tcp6 ext headers", func() { _ = Decode(tcpv6, &p) }},
		{"Decode icmp4 error", func() { _ = Decode(icmpErr, &p) }},
		{"Decode icmp6 error", func() { _ = Decode(icmpErr6, &p) }},
		{"Decode malformed", func() { _ = Decode(bad, &p) }},
		{"SetSource tcp4", func() { _ = Decode(tcp, &p); SetSource(tcp, &p, a4, 1) }},
		{"SetDestination tcp4", func() { _ = Decode(tcp, &p); SetDestination(tcp, &p, b4, 2) }},
		{"SetSource tcp6", func() { _ = Decode(tcpv6, &p); SetSource(tcpv6, &p, a6, 1) }},
		{"SetDestination echo6", func() { _ = Decode(ping, &p); SetDestination(ping, &p, b6, 9) }},
		{"SetInnerSource icmp4", func() { _ = Decode(icmpErr, &p); SetInnerSource(icmpErr, &p, a4, 3) }},
		{"SetInnerDestination icmp6", func() { _ = Decode(icmpErr6, &p); SetInnerDestination(icmpErr6, &p, b6, 4) }},
		{"ChecksumsValid", func() { _ = Decode(tcp, &p); ChecksumsValid(tcp, &p) }},
		{"BuildReset", func() { _, _ = BuildReset(dst, tcp) }},
		{"BuildRST", func() { _, _ = BuildRST(dst, ap("192.0.2.1:1"), ap("192.0.2.2:2"), 1, 2, true) }},
		{"BuildUnreachable", func() { _, _ = BuildUnreachable(dst, u6, a6) }},
		{"IPLen", func() { _ = IPLen(tcpv6) + int(IPVersion(tcp)) }},
		{"PartialChecksumProto", func() { _, _ = PartialChecksumProto(tcp, 20, 16) }},
		{"UDPCoalescer", func() {
			r := run[:copy(run, d1)]
			if !co.Begin(r, 20, 6) || !co.Append(d1, 20, 6) {
				t.Fatal("no run")
			}
			co.Finish()
		}},
		{"Segment", func() { _, _ = Segment(seg, u6, GSO{Proto: ProtoUDP, L4Off: 40, Size: 50}, 1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.f); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
}
