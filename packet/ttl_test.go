package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestDecrementHopLimit(t *testing.T) {
	with := func(pkt []byte, v uint8, ttl uint8) []byte {
		b := append([]byte(nil), pkt...)
		if v == 4 {
			b[8] = ttl
			refFixIPv4(b)
		} else {
			b[7] = ttl
		}
		return b
	}
	seg4 := tcp4("192.0.2.1:40000", "198.51.100.7:80", TCPAck, 1, 2, bytesOf(100, 0))
	seg6 := tcp6("[2001:db8::1]:40000", "[2001:db8:1::7]:80", TCPAck, 1, 2, bytesOf(100, 0))
	opts4 := withIPv4Options(seg4, []byte{0x94, 4, 0, 0})
	for _, tc := range []struct {
		name string
		pkt  []byte
		v    uint8
	}{{"ipv4", seg4, 4}, {"ipv4 with options", opts4, 4}, {"ipv6", seg6, 6}} {
		for _, ttl := range []uint8{255, 64, 2, 1, 0} {
			b := with(tc.pkt, tc.v, ttl)
			var p Info
			if err := Decode(b, &p); err != nil {
				t.Fatal(err)
			}
			orig := append([]byte(nil), b...)
			ok := DecrementHopLimit(b, &p)
			if ok != (ttl > 1) {
				t.Fatalf("%s ttl %d: DecrementHopLimit = %v", tc.name, ttl, ok)
			}
			if !ok {
				if !bytes.Equal(b, orig) {
					t.Errorf("%s ttl %d: changed a packet it refused", tc.name, ttl)
				}
				continue
			}
			if got := HopLimit(b, &p); got != ttl-1 {
				t.Errorf("%s: hop limit %d after, want %d", tc.name, got, ttl-1)
			}
			// The header checksum equals a from-scratch computation, and
			// only the TTL and the checksum changed.
			checkPacket(t, b)
			want := with(orig, tc.v, ttl-1)
			if !bytes.Equal(b, want) {
				t.Errorf("%s ttl %d:\n got  % x\n want % x", tc.name, ttl, b, want)
			}
		}
	}
	// Every header checksum stays what a full computation gives, the corner
	// cases of one's complement included: random headers, every TTL.
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 50000 {
		b := append([]byte(nil), seg4...)
		for i := 12; i < 20; i++ {
			b[i] = byte(rng.Uint32())
		}
		b[4], b[5] = byte(rng.Uint32()), byte(rng.Uint32())
		b[8] = byte(2 + n%254)
		refFixIPv4(b)
		var p Info
		if err := Decode(b, &p); err != nil {
			t.Fatal(err)
		}
		if !DecrementHopLimit(b, &p) {
			t.Fatalf("refused TTL %d", b[8]+1)
		}
		if got, want := binary.BigEndian.Uint16(b[10:]), refChecksum(nil, b[:20], 10); got != want {
			t.Fatalf("header % x: checksum %#04x after the decrement, a full computation gives %#04x", b[:20], got, want)
		}
	}
	var none Info
	if DecrementHopLimit(seg4, &none) || HopLimit(seg4, &none) != 0 {
		t.Error("an Info that describes nothing was used")
	}
}

func TestBuildTimeExceeded(t *testing.T) {
	from4, from6 := ip("198.18.0.1"), ip("fd00:18::1")
	udp1 := func(pkt []byte, v uint8) []byte {
		if v == 4 {
			pkt[8] = 1
			refFixIPv4(pkt)
		} else {
			pkt[7] = 1
		}
		return pkt
	}
	for _, tc := range []struct {
		name      string
		offending []byte
		from      netip.Addr
		want      error
	}{
		{"udp4 probe", udp1(udp4("198.18.0.2:40000", "198.19.0.2:33434", bytesOf(32, 0)), 4), from4, nil},
		{"udp6 probe", udp1(udp6("[fd00:18::2]:40000", "[fd00:19::2]:33434", bytesOf(32, 0)), 6), from6, nil},
		{"tcp4 syn", udp1(tcp4("198.18.0.2:40000", "198.19.0.2:80", TCPSyn, 7, 0, nil), 4), from4, nil},
		{"icmp4 error is never answered", icmp4Err("198.18.0.2", "198.19.0.2", 3, 1, udp4("198.19.0.2:1", "198.18.0.2:2", nil), 28), from4, ErrICMPError},
		{"family mismatch", udp4("198.18.0.2:1", "198.19.0.2:2", nil), from6, ErrAddrFamily},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := BuildTimeExceeded(make([]byte, 0, 1500), tc.offending, tc.from)
			if !errors.Is(err, tc.want) {
				t.Fatalf("BuildTimeExceeded: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			var off Info
			Decode(tc.offending, &off)
			gp := checkPacket(t, b)
			hl := 20
			switch l := gp.NetworkLayer().(type) {
			case *layers.IPv4:
				m := gp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if m.TypeCode != layers.CreateICMPv4TypeCode(11, 0) || l.SrcIP.String() != tc.from.String() || l.DstIP.String() != off.Src.String() {
					t.Errorf("ICMPv4 %v from %v to %v", m.TypeCode, l.SrcIP, l.DstIP)
				}
			case *layers.IPv6:
				hl = 40
				m := gp.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				if m.TypeCode != layers.CreateICMPv6TypeCode(3, 0) || l.SrcIP.String() != tc.from.String() || l.DstIP.String() != off.Src.String() {
					t.Errorf("ICMPv6 %v from %v to %v", m.TypeCode, l.SrcIP, l.DstIP)
				}
			}
			if q := b[hl+8:]; !bytes.Equal(q, tc.offending) {
				t.Errorf("quote differs from the offending packet")
			}
			var p Info
			if err := Decode(b, &p); err != nil || !p.ICMPError || !p.Inner.Valid || p.Inner.DstPort != off.DstPort {
				t.Errorf("Decode(error) = %v %+v", err, p.Inner)
			}
		})
	}
}

func TestTCPWindowScale(t *testing.T) {
	opt := func(kind, n byte, data ...byte) layers.TCPOption {
		return layers.TCPOption{OptionType: layers.TCPOptionKind(kind), OptionLength: n, OptionData: data}
	}
	seg := func(opts ...layers.TCPOption) []byte {
		s, d := ap("198.18.0.2:40000"), ap("198.19.0.2:80")
		ipl := ipv4Layer(s.Addr(), d.Addr(), layers.IPProtocolTCP)
		tl := tcpLayer(s.Port(), d.Port(), TCPSyn, 1, 0)
		tl.Options = opts
		_ = tl.SetNetworkLayerForChecksum(ipl)
		return serialize(ipl, tl, gopacket.Payload(nil))
	}
	mss := opt(2, 4, 0x05, 0xb4)
	sackOK := opt(4, 2)
	ts := opt(8, 10, 1, 2, 3, 4, 0, 0, 0, 0)
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	eol := layers.TCPOption{OptionType: layers.TCPOptionKindEndList, OptionLength: 1}
	for _, tc := range []struct {
		name  string
		pkt   []byte
		shift uint8
		ok    bool
	}{
		{"Linux SYN", seg(mss, sackOK, ts, nop, opt(3, 3, 7)), 7, true},
		{"scale 14", seg(opt(3, 3, 14), nop), 14, true},
		{"scale 15 as sent", seg(opt(3, 3, 15), nop), 15, true},
		{"none", seg(mss, sackOK), 0, false},
		{"no options", seg(), 0, false},
		{"after end of list", seg(eol, nop, nop, opt(3, 3, 7)), 0, false},
		{"wrong length", seg(opt(3, 4, 7, 0)), 0, false},
		{"the later one wins", seg(opt(3, 3, 2), opt(3, 3, 9), nop, nop), 9, true},
	} {
		var p Info
		if err := Decode(tc.pkt, &p); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if shift, ok := TCPWindowScale(tc.pkt, &p); shift != tc.shift || ok != tc.ok {
			t.Errorf("%s: TCPWindowScale = %d %v, want %d %v", tc.name, shift, ok, tc.shift, tc.ok)
		}
	}
	// A silly length ends the walk; a length past the options is partial.
	b := seg(nop, nop, nop, nop, mss, nop, nop, nop, nop)
	var p Info
	Decode(b, &p)
	copy(b[p.L4Off+20:], []byte{2, 0, 3, 3, 7, 1, 1, 1})
	if _, ok := TCPWindowScale(b, &p); ok {
		t.Error("read an option after a zero length")
	}
	copy(b[p.L4Off+20:], []byte{1, 1, 1, 1, 1, 1, 3, 9})
	if _, ok := TCPWindowScale(b, &p); ok {
		t.Error("read a partial option")
	}
	udp := udp4("198.18.0.2:1", "198.19.0.2:2", nil)
	Decode(udp, &p)
	if _, ok := TCPWindowScale(udp, &p); ok {
		t.Error("a UDP datagram has a TCP option")
	}
}
