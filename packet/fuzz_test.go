package packet

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// The seed corpus lives in testdata/fuzz/<FuzzName>/ and is generated from
// seedPackets by:
//
//	go test ./packet -run TestSeedCorpus -update-corpus
var updateCorpus = flag.Bool("update-corpus", false, "rewrite the checked-in fuzz seed corpus")

// seedPackets returns realistic packets of each kind, and a few malformed
// ones, by name.
func seedPackets() map[string][]byte {
	c4, s4 := "192.0.2.1:40000", "198.51.100.7:8443"
	c6, s6 := "[2001:db8::1]:40000", "[2001:db8:1::7]:8443"
	syn4 := tcp4(c4, s4, TCPSyn, 1000, 0, nil)
	data4 := tcp4(c4, s4, TCPAck|TCPPsh, 1001, 5001, []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
	syn6 := tcp6(c6, s6, TCPSyn, 1000, 0, nil)
	data6 := tcp6(c6, s6, TCPAck|TCPPsh, 1001, 5001, bytesOf(200, 1))
	u4 := udp4("192.0.2.1:40001", "198.51.100.7:5300", bytesOf(300, 2))
	u6 := udp6("[2001:db8::1]:40001", "[2001:db8:1::7]:5300", bytesOf(300, 2))
	ping4 := echo4("192.0.2.1", "198.51.100.7", false, 0x4242, 1, bytesOf(56, 0))
	ping6 := echo6("2001:db8::1", "2001:db8:1::7", false, 0x4343, 1, bytesOf(56, 0))
	zero4 := bytes.Clone(u4)
	zero4[26], zero4[27] = 0, 0
	badIHL := bytes.Clone(syn4)
	badIHL[0] = 0x44
	return map[string][]byte{
		"tcp4-syn":               syn4,
		"tcp4-synack":            tcp4(s4, c4, TCPSyn|TCPAck, 5000, 1001, nil),
		"tcp4-data":              data4,
		"tcp4-fin":               tcp4(c4, s4, TCPFin|TCPAck, 1035, 5001, nil),
		"tcp4-rst":               tcp4(s4, c4, TCPRst, 5001, 0, nil),
		"tcp4-ip-options":        withIPv4Options(data4, []byte{0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0}),
		"tcp6-syn":               syn6,
		"tcp6-data":              data6,
		"tcp6-rst-ack":           tcp6(s6, c6, TCPRst|TCPAck, 0, 1001, nil),
		"tcp6-ext-headers":       withExt(data6, hbh(1), dstopts(1), routing0(), dstopts(2)),
		"tcp6-ah":                withExt(syn6, ah()),
		"udp4":                   u4,
		"udp4-no-checksum":       zero4,
		"udp6":                   u6,
		"echo4-request":          ping4,
		"echo4-reply":            echo4("198.51.100.7", "192.0.2.1", true, 0x4242, 1, bytesOf(56, 0)),
		"echo6-request":          ping6,
		"echo6-reply":            echo6("2001:db8:1::7", "2001:db8::1", true, 0x4343, 1, bytesOf(56, 0)),
		"icmp4-unreach-tcp4":     icmp4Err("198.51.100.254", "192.0.2.1", 3, 13, syn4, 28),
		"icmp4-unreach-tcp4-all": icmp4Err("198.51.100.254", "192.0.2.1", 3, 3, data4, -1),
		"icmp4-ttl-udp4":         icmp4Err("198.51.100.254", "192.0.2.1", 11, 0, u4, 548),
		"icmp4-param-echo4":      icmp4Err("198.51.100.254", "192.0.2.1", 12, 0, ping4, 28),
		"icmp6-unreach-tcp6":     icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 1, 0, data6, 48),
		"icmp6-too-big-udp6":     icmp6Err("2001:db8:ff::1", "2001:db8::1", 2, 0, 1280, u6, -1),
		"icmp6-ttl-echo6":        icmp6Err("2001:db8:ff::1", "2001:db8::1", 3, 0, 0, ping6, -1),
		"icmp6-unreach-ext-tcp6": icmp6Err("2001:db8:ff::1", "2001:db8::1", 1, 0, 0, withExt(data6, hbh(1)), 64),
		"frag4-first-udp":        frag4(u4, 0, 96, true),
		"frag4-middle-udp":       frag4(u4, 12, 96, true),
		"frag4-last-udp":         frag4(u4, 24, 96, false),
		"frag4-tiny-tcp":         frag4(data4, 0, 8, true),
		"frag6-first-udp":        frag6(u6, 0, 96, true, 0xabcdef),
		"frag6-last-udp":         frag6(u6, 24, 96, false, 0xabcdef),
		"frag6-atomic-tcp":       frag6(data6, 0, 1000, false, 7),
		"esp6": func() []byte {
			b := withExt(data6, dstopts(1))
			b[40] = ProtoESP
			return b
		}(),
		"gre4": func() []byte {
			b := udp4("192.0.2.1:1", "192.0.2.2:2", bytesOf(20, 0))
			b[9] = 47
			refFixIPv4(b)
			return b
		}(),
		"bad-ihl":         badIHL,
		"truncated-tcp4":  data4[:30],
		"truncated-ipv6":  data6[:39],
		"ext-chain-cut6":  withExt(data6, hbh(1))[:44],
		"bad-version":     {0x55, 0, 0, 20},
		"multicast-udp4":  udp4("192.0.2.1:40001", "239.1.2.3:5300", nil),
		"link-local-udp6": udp6("[fe80::1]:546", "[ff02::1:2]:547", bytesOf(40, 5)),
	}
}

// corpusFile renders fuzz arguments in the `go test fuzz v1` format.
func corpusFile(args ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		default:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		}
	}
	return b.Bytes()
}

// seedCorpus returns the seed files of every fuzz target: target -> file
// name -> contents.
func seedCorpus() map[string]map[string][]byte {
	c := map[string]map[string][]byte{}
	add := func(target, name string, args ...any) {
		if c[target] == nil {
			c[target] = map[string][]byte{}
		}
		c[target][name] = corpusFile(args...)
	}
	names := make([]string, 0)
	pkts := seedPackets()
	for name := range pkts {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		pkt := pkts[name]
		add("FuzzDecode", name, pkt)
		add("FuzzBuilders", name, pkt, uint32(1000*i), uint32(7*i), i%2 == 0)
		var a []byte
		if len(pkt) > 0 && pkt[0]>>4 == 6 {
			a = ip("2001:db8:beef::1").AsSlice()
		} else {
			a = ip("203.0.113.1").AsSlice()
		}
		add("FuzzRewrite", name, pkt, a, uint16(60000+i))
		switch {
		case len(pkt) > 0 && pkt[0]>>4 == 4:
			add("FuzzParseIPv4", name, pkt)
		case len(pkt) > 0 && pkt[0]>>4 == 6:
			add("FuzzParseIPv6", name, pkt)
		}
		var p Info
		if Decode(pkt, &p) != nil || !p.HasL4 {
			continue
		}
		switch p.Proto {
		case ProtoTCP:
			add("FuzzOffload", name, pkt, uint8(p.L4Off), uint8(tcpChecksum), uint16(100))
		case ProtoUDP:
			add("FuzzOffload", name, pkt, uint8(p.L4Off), uint8(udpChecksum), uint16(100))
			// A run of the datagram and a copy of it, and with a shorter
			// copy (a cut makes the lengths wrong: refused).
			add("FuzzCoalesceUDP", name, pkt, pkt, uint8(p.L4Off), uint8(udpChecksum))
			add("FuzzCoalesceUDP", name+"-short", pkt, pkt[:len(pkt)-1], uint8(p.L4Off), uint8(udpChecksum))
		}
		seg := pkt[p.L4Off:p.TotalLen]
		switch p.Proto {
		case ProtoTCP:
			add("FuzzParseTCP", name, seg)
		case ProtoUDP:
			add("FuzzParseUDP", name, seg)
		case ProtoICMP, ProtoICMPv6:
			add("FuzzParseICMP", name, seg)
		}
	}
	return c
}

// TestSeedCorpus checks that the checked-in corpus holds every seed.
func TestSeedCorpus(t *testing.T) {
	for target, files := range seedCorpus() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, want := range files {
			path := filepath.Join(dir, name)
			if *updateCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v); run go test ./packet -run TestSeedCorpus -update-corpus", path, err)
			}
		}
	}
}

// checkInfo asserts what Decode promises about a packet it accepted.
func checkInfo(t *testing.T, b []byte, p *Info) {
	t.Helper()
	if p.TotalLen > len(b) || !p.consistent(b) {
		t.Fatalf("Info inconsistent with its packet: %+v", p)
	}
	if (p.Version == 4) != p.Src.Is4() || (p.Version == 4) != p.Dst.Is4() || !p.Src.IsValid() {
		t.Fatalf("addresses %v %v for version %d", p.Src, p.Dst, p.Version)
	}
	if p.HasL4 && p.FragOffset != 0 {
		t.Fatal("HasL4 on a later fragment")
	}
	if p.Fragment != (p.MoreFrags || p.FragOffset != 0) {
		t.Fatal("Fragment disagrees with MoreFrags and FragOffset")
	}
	if p.HasL4 && (p.Proto == ProtoTCP || p.Proto == ProtoUDP) {
		if p.PayloadLen < 0 || p.L4Off+p.PayloadLen > p.TotalLen {
			t.Fatalf("PayloadLen %d past the packet", p.PayloadLen)
		}
	}
	if p.ICMPError && p.Inner.Valid {
		if !p.innerConsistent(b) {
			t.Fatalf("Inner inconsistent: %+v", p.Inner)
		}
		if p.Inner.Src.Is4() != (p.Version == 4) {
			t.Fatal("quoted packet of the other IP version")
		}
	}
	if p.Inner != (Inner{}) && !p.ICMPError {
		t.Fatal("Inner set on a packet that is not an ICMP error")
	}
}

func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		// The exported views read any bytes; on a packet Decode accepts they
		// say what it says.
		v, n := IPVersion(b), IPLen(b)
		if len(b) > 0 && v != b[0]>>4 || len(b) == 0 && v != 0 || n < 0 || n > IPv6HeaderLen+0xffff ||
			n != 0 && (v != 4 && v != 6 || v == 4 && len(b) < 20 || v == 6 && len(b) < 40) {
			t.Fatalf("IPVersion %d, IPLen %d of %d bytes", v, n, len(b))
		}
		var p Info
		if err := Decode(b, &p); err != nil {
			return
		}
		checkInfo(t, b, &p)
		if v != p.Version || n != p.TotalLen {
			t.Fatalf("IPVersion %d, IPLen %d; Decode: version %d, total length %d", v, n, p.Version, p.TotalLen)
		}
		// The views agree with Decode.
		switch p.Version {
		case 4:
			v, err := parseIPv4(b)
			if err != nil || v.src() != p.Src || v.protocol() != p.Proto || len(v) != p.TotalLen {
				t.Fatalf("parseIPv4 disagrees: %v", err)
			}
		case 6:
			v, err := parseIPv6(b)
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.chain()
			if err != nil || c.Proto != p.Proto || c.Off != p.L4Off || v.dst() != p.Dst {
				t.Fatalf("chain disagrees: %+v %v", c, err)
			}
		}
		if p.HasL4 && p.Proto == ProtoTCP {
			v, err := parseTCP(b[p.L4Off:p.TotalLen])
			if err != nil || v.seq() != p.Seq || v.flags() != p.TCPFlags || len(v.payload()) != p.PayloadLen {
				t.Fatalf("parseTCP disagrees: %v", err)
			}
		}
		if p.HasL4 && p.Proto == ProtoUDP && !p.Fragment {
			v, err := parseUDP(b[p.L4Off:p.TotalLen])
			if err != nil || len(v.payload()) != p.PayloadLen || v.dstPort() != p.DstPort {
				t.Fatalf("parseUDP disagrees: %v", err)
			}
		}
		ChecksumsValid(b, &p)
	})
}

func FuzzParseIPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseIPv4(b)
		// ipv4HeaderLen makes the header checks of parseIPv4.
		if h, herr := ipv4HeaderLen(b); err != nil && err != ErrBadTotalLen && herr != err ||
			(err == nil || err == ErrBadTotalLen) && (herr != nil || h != int(b[0]&0x0f)*4) {
			t.Fatalf("parseIPv4 %v, ipv4HeaderLen %d %v", err, h, herr)
		}
		if err != nil {
			return
		}
		hl := v.headerLen()
		if hl < 20 || hl > v.totalLen() || v.totalLen() != len(v) || len(v) > len(b) ||
			len(v.options()) != hl-20 || len(v.payload()) != v.totalLen()-hl {
			t.Fatalf("IPv4 view inconsistent: hl %d total %d len %d", hl, v.totalLen(), len(v))
		}
		_, _, _, _ = v.id(), v.dontFragment(), v.moreFragments(), v.ttl()
		if v.isFragment() != (v.moreFragments() || v.fragOffset() != 0) {
			t.Fatal("isFragment")
		}
		if calc := calculateIPv4Checksum(v); v.checksumValid() != (calc == v.checksum() || calc == 0 && v.checksum() == 0xffff) {
			t.Fatalf("checksumValid %v, calculated %#04x, field %#04x", v.checksumValid(), calc, v.checksum())
		}
		if IPv4HeaderChecksumValid(b) != v.checksumValid() {
			t.Fatalf("IPv4HeaderChecksumValid %v, checksumValid %v", IPv4HeaderChecksumValid(b), v.checksumValid())
		}
		// gopacket, where it accepts the header, reads the same fields.
		var g layers.IPv4
		if g.DecodeFromBytes(b, nopFeedback{}) == nil {
			if int(g.IHL)*4 != hl || int(g.Length) != v.totalLen() || uint8(g.Protocol) != v.protocol() ||
				g.SrcIP.String() != v.src().String() || g.DstIP.String() != v.dst().String() || g.FragOffset != v.fragOffset() {
				t.Fatalf("gopacket reads %+v", g)
			}
		}
	})
}

type nopFeedback struct{}

func (nopFeedback) SetTruncated() {}

func FuzzParseIPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseIPv6(b)
		if err != nil {
			return
		}
		if len(v) != 40+v.payloadLen() || len(v.payload()) != v.payloadLen() {
			t.Fatal("IPv6 view inconsistent")
		}
		_, _, _ = v.nextHeader(), v.hopLimit(), v.src()
		c, err := v.chain()
		if err != nil {
			return
		}
		if c.Off < 40 || c.Off > len(v) || c.HasFrag && (c.FragHdrOff < 40 || c.FragHdrOff+8 > c.Off) {
			t.Fatalf("chain %+v for %d bytes", c, len(v))
		}
		if !c.HasFrag && (c.FragOffset != 0 || c.MoreFrags || c.FragID != 0) {
			t.Fatal("fragment fields without a Fragment header")
		}
	})
}

func FuzzParseTCP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseTCP(b)
		if err != nil {
			return
		}
		n := v.headerLen()
		if n < 20 || n > len(v) || len(v.options()) != n-20 || len(v.payload()) != len(v)-n {
			t.Fatalf("TCP view inconsistent: header %d of %d", n, len(v))
		}
		_, _, _, _, _, _, _ = v.srcPort(), v.dstPort(), v.seq(), v.ack(), v.flags(), v.window(), v.checksum()
	})
}

func FuzzParseUDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseUDP(b)
		if err != nil {
			return
		}
		if v.length() != len(v) || len(v) < 8 || len(v) > len(b) || len(v.payload()) != len(v)-8 {
			t.Fatal("UDP view inconsistent")
		}
		_, _, _ = v.srcPort(), v.dstPort(), v.checksum()
	})
}

func FuzzParseICMP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseICMP(b)
		if (err == nil) != (len(b) >= 8) {
			t.Fatalf("parseICMP of %d bytes: %v", len(b), err)
		}
		if err != nil {
			return
		}
		_, _, _, _, _ = v.typ(), v.code(), v.checksum(), v.id(), v.seq()
		if len(v.body()) != len(b)-8 {
			t.Fatal("ICMP view inconsistent")
		}
		for _, ver := range []uint8{4, 6} {
			if v.isEchoReply(ver) && !v.isEcho(ver) || v.isEcho(ver) && v.isError(ver) {
				t.Fatalf("ICMPv%d type %d both echo and error, or echo reply but not echo", ver, v.typ())
			}
		}
	})
}

// FuzzBuilders: whatever the input, the builders do not panic, and every
// packet they build from a decodable input decodes, has right checksums
// (recomputed from scratch) and answers the input.
func FuzzBuilders(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, seq, ack uint32, withAck bool) {
		var p Info
		if err := Decode(b, &p); err != nil {
			return
		}
		dst := make([]byte, 0, 1500)

		rst, err := BuildReset(dst, b)
		if p.Proto == ProtoTCP && p.HasL4 && !p.Fragment && p.TCPFlags&TCPRst == 0 && unicast(p.Src, p.Dst) && err != nil {
			t.Fatalf("BuildReset refused a resettable segment: %v", err)
		}
		if err == nil {
			var r Info
			if err := Decode(rst, &r); err != nil || !ChecksumsValid(rst, &r) {
				t.Fatalf("RST does not decode with right checksums: %v\n% x", err, rst)
			}
			checkPacket(t, rst)
			if r.Proto != ProtoTCP || r.TCPFlags&TCPRst == 0 || r.Src != p.Dst || r.Dst != p.Src ||
				r.SrcPort != p.DstPort || r.DstPort != p.SrcPort {
				t.Fatalf("RST %+v answers %+v", r, p)
			}
			if p.TCPFlags&TCPAck != 0 && (r.Seq != p.Ack || r.TCPFlags != TCPRst) {
				t.Fatalf("RST seq %d flags %#x, want seq %d RST", r.Seq, r.TCPFlags, p.Ack)
			}
		}

		icmp, err := BuildUnreachable(dst, b, p.Dst)
		if err == nil {
			var r Info
			if err := Decode(icmp, &r); err != nil || !ChecksumsValid(icmp, &r) {
				t.Fatalf("ICMP error does not decode with right checksums: %v\n% x", err, icmp)
			}
			checkPacket(t, icmp)
			limit := ICMPv4MaxErrorLen
			if p.Version == 6 {
				limit = ICMPv6MaxErrorLen
			}
			q := icmp[r.L4Off+8:]
			if !r.ICMPError || r.Src != p.Dst || r.Dst != p.Src || len(icmp) > limit || !bytes.Equal(q, b[:len(q)]) {
				t.Fatalf("ICMP error %+v answers %+v", r, p)
			}
			if r.Inner.Valid && (r.Inner.Src != p.Src || r.Inner.Dst != p.Dst) {
				t.Fatalf("quoted tuple %+v, offending %+v", r.Inner, p)
			}
		}

		// A router's hop: the checksum stays as right (or wrong) as it was.
		if c := append([]byte(nil), b...); DecrementHopLimit(c, &p) {
			var q Info
			if err := Decode(c, &q); err != nil || ChecksumsValid(c, &q) != ChecksumsValid(b, &p) || HopLimit(c, &q) != HopLimit(b, &p)-1 {
				t.Fatalf("DecrementHopLimit broke the packet: %v", err)
			}
		}
		TCPWindowScale(b, &p)

		bare, err := BuildRST(dst, netip.AddrPortFrom(p.Dst, p.DstPort), netip.AddrPortFrom(p.Src, p.SrcPort), seq, ack, withAck)
		if err == nil {
			var r Info
			if err := Decode(bare, &r); err != nil || !ChecksumsValid(bare, &r) {
				t.Fatalf("bare RST does not decode with right checksums: %v", err)
			}
			checkPacket(t, bare)
			if r.Seq != seq || withAck && r.Ack != ack || r.TCPFlags&TCPAck != 0 != withAck {
				t.Fatalf("bare RST %+v", r)
			}
		}

		// Segments and datagrams carrying the input as payload.
		from, to := netip.AddrPortFrom(p.Dst, p.DstPort), netip.AddrPortFrom(p.Src, p.SrcPort)
		data := b[:min(len(b), 200)]
		seg, err := BuildTCP(dst, from, to, seq, ack, uint8(seq), uint16(ack), data)
		if err == nil {
			var r Info
			if err := Decode(seg, &r); err != nil || !ChecksumsValid(seg, &r) {
				t.Fatalf("TCP segment does not decode with right checksums: %v", err)
			}
			checkPacket(t, seg)
			if r.Seq != seq || r.Ack != ack || r.TCPFlags != uint8(seq) || r.Window != uint16(ack) || r.PayloadLen != len(data) {
				t.Fatalf("TCP segment %+v", r)
			}
		}
		dgram, err := BuildUDP(dst, from, to, data)
		if err == nil {
			var r Info
			if err := Decode(dgram, &r); err != nil || !ChecksumsValid(dgram, &r) {
				t.Fatalf("UDP datagram does not decode with right checksums: %v", err)
			}
			checkPacket(t, dgram)
			if r.SrcPort != p.DstPort || r.DstPort != p.SrcPort || r.PayloadLen != len(data) {
				t.Fatalf("UDP datagram %+v", r)
			}
		}
	})
}

// FuzzRewrite: the rewrites never panic; after one that succeeds the Info
// equals a fresh Decode, and a packet whose checksums were right keeps them
// right.
func FuzzRewrite(f *testing.F) {
	f.Fuzz(func(t *testing.T, b, addr []byte, port uint16) {
		var p Info
		if err := Decode(b, &p); err != nil {
			return
		}
		var a netip.Addr
		switch len(addr) {
		case 4:
			a = netip.AddrFrom4([4]byte(addr))
		case 16:
			a = netip.AddrFrom16([16]byte(addr))
		}
		valid := ChecksumsValid(b, &p)
		quoteValid := func(b []byte, p *Info) bool {
			// The quoted IPv4 header checksum, when it was right, stays right.
			if p.Version != 4 || !p.ICMPError || !p.Inner.Valid {
				return true
			}
			h := b[p.Inner.Off:]
			return Checksum(h[:int(h[0]&0xf)*4], 0) == 0
		}
		for i, set := range []func([]byte, *Info, netip.Addr, uint16) bool{SetSource, SetDestination, SetInnerSource, SetInnerDestination} {
			c, q := bytes.Clone(b), p
			qv := quoteValid(c, &q)
			if !set(c, &q, a, port) {
				if !bytes.Equal(c, b) || q != p {
					t.Fatalf("rewrite %d refused but changed something", i)
				}
				continue
			}
			var fresh Info
			if err := Decode(c, &fresh); err != nil || fresh != q {
				t.Fatalf("rewrite %d: Info\n%+v\nDecode\n%+v (%v)", i, q, fresh, err)
			}
			if valid && !ChecksumsValid(c, &q) {
				t.Fatalf("rewrite %d broke a checksum\n% x\n% x", i, b, c)
			}
			if qv && !quoteValid(c, &q) {
				t.Fatalf("rewrite %d broke the quoted IPv4 header checksum", i)
			}
		}
	})
}

// FuzzOffload: PartialChecksumProto and the partial checksum helpers never
// panic; a partial checksum PartialChecksumProto accepts is the one of the
// transport header Decode finds; Hide then Reveal gives the field back; and
// Segments and Segment never panic, cut the payload whole, and cut a packet
// Decode accepts into packets it accepts with right checksums.
func FuzzOffload(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, start, off uint8, size uint16) {
		st, of := int(start), int(off)
		var p Info
		decoded := Decode(b, &p) == nil
		proto, ok := PartialChecksumProto(b, st, of)
		if ok {
			hl := TCPMinHeaderLen
			if proto == ProtoUDP {
				hl = UDPHeaderLen
			}
			if proto != ProtoTCP && proto != ProtoUDP || st+hl > len(b) {
				t.Fatalf("PartialChecksumProto = %d for a header at %d of %d bytes", proto, st, len(b))
			}
			if decoded && p.FragOffset == 0 && (p.L4Off != st || p.Proto != proto) {
				t.Fatalf("PartialChecksumProto: %d at %d; Decode: %d at %d", proto, st, p.Proto, p.L4Off)
			}
			c := bytes.Clone(b)
			if !HidePartialChecksum(c, st, of) || !RevealPartialChecksum(c, st, of) {
				t.Fatal("Hide or Reveal refused a partial checksum PartialChecksumProto accepts")
			}
			if got, was := c[st+of:st+of+2], b[st+of:st+of+2]; !bytes.Equal(got, was) &&
				(got[0]^was[0] != 0xff || got[1]^was[1] != 0xff) {
				t.Fatalf("Hide then Reveal turned % x into % x", was, got)
			}
		}
		CompleteChecksum(bytes.Clone(b), st, of)

		dst := make([]byte, 2*65536)
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			g := GSO{Proto: proto, L4Off: st, Size: int(size)}
			n, err := Segments(b, g)
			if err != nil {
				continue
			}
			whole := decoded && !p.Fragment && p.HasL4 && p.Proto == proto && p.L4Off == st && p.TotalLen == len(b)
			payload, hdrLen := 0, -1
			for i := range n {
				m, err := Segment(dst, b, g, i)
				if err != nil {
					t.Fatalf("Segments says %d, segment %d: %v", n, i, err)
				}
				seg := dst[:m]
				h := st + UDPHeaderLen
				if proto == ProtoTCP {
					h = st + tcpSegment(seg[st:]).headerLen()
				}
				if hdrLen >= 0 && h != hdrLen || m-h > g.Size || i < n-1 && m-h != g.Size {
					t.Fatalf("segment %d: %d bytes, headers %d", i, m, h)
				}
				hdrLen = h
				payload += m - h
				if whole {
					var q Info
					if err := Decode(seg, &q); err != nil || !ChecksumsValid(seg, &q) {
						t.Fatalf("segment %d of a whole packet: %v, checksums valid %v", i, err, ChecksumsValid(seg, &q))
					}
				}
			}
			if payload != len(b)-hdrLen {
				t.Fatalf("segments carry %d bytes of the %d after the headers", payload, len(b)-hdrLen)
			}
		}
	})
}

// FuzzCoalesceUDP: UDPCoalescer never panics and never changes a datagram it
// refuses; the super-packet of a run is whole once its partial checksum is
// completed, and Segment cuts it back into the datagrams' payloads.
func FuzzCoalesceUDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, a, b []byte, start, off uint8) {
		st, of := int(start), int(off)
		first := append(make([]byte, 0, len(a)+2*len(b)), a...)
		bb := bytes.Clone(b)
		var c UDPCoalescer
		if !c.Begin(first, st, of) {
			if c.Len() != 0 || c.Append(bb, st, of) {
				t.Fatal("Append took a datagram after a refused Begin")
			}
			return
		}
		var payloads [][]byte
		payloads = append(payloads, a[st+UDPHeaderLen:])
		for range 2 {
			if c.Append(bb, st, of) {
				payloads = append(payloads, b[st+UDPHeaderLen:])
			} else if !bytes.Equal(first, a) {
				t.Fatal("a refused Append changed the run")
			}
		}
		if !bytes.Equal(bb, b) {
			t.Fatal("Append changed the datagram it read")
		}
		if c.Len() != len(payloads) {
			t.Fatalf("Len %d, %d datagrams taken", c.Len(), len(payloads))
		}
		super, g := c.Finish()
		if len(payloads) < 2 {
			if !bytes.Equal(super, a) || g != (GSO{}) {
				t.Fatal("Finish of one datagram changed it")
			}
			return
		}
		if g.Proto != ProtoUDP || g.L4Off != st || g.Size != len(payloads[0]) || IPLen(super) != len(super) {
			t.Fatalf("GSO %+v for a super-packet of %d bytes (IP length %d)", g, len(super), IPLen(super))
		}
		whole := bytes.Clone(super)
		RevealPartialChecksum(whole, g.L4Off, g.CsumOffset())
		CompleteChecksum(whole, g.L4Off, g.CsumOffset())
		var p Info
		if err := Decode(whole, &p); err != nil || !p.HasL4 || p.Proto != ProtoUDP || !ChecksumsValid(whole, &p) {
			t.Fatalf("super-packet: %v, checksums valid %v", err, ChecksumsValid(whole, &p))
		}
		n, err := Segments(super, g)
		if err != nil || n != len(payloads) {
			t.Fatalf("Segments = %d, %v; want %d", n, err, len(payloads))
		}
		dst := make([]byte, 65535)
		for i := range n {
			m, err := Segment(dst, super, g, i)
			if err != nil || !bytes.Equal(dst[st+UDPHeaderLen:m], payloads[i]) {
				t.Fatalf("segment %d: %v, payload differs", i, err)
			}
		}
	})
}
