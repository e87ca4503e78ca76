package policy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Test addresses: the lab's.
var (
	client4 = netip.MustParseAddr("198.18.0.2")
	server4 = netip.MustParseAddr("198.19.0.2")
	out4    = netip.MustParseAddr("198.19.0.1")
	client6 = netip.MustParseAddr("fd00:18::2")
	server6 = netip.MustParseAddr("fd00:19::2")
	out6    = netip.MustParseAddr("fd00:19::1")
	t0      = time.Unix(1_000_000, 0)
)

func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.NetworkLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// tcp builds a TCP segment; flags is a string of S, A, F, R, P.
func tcp(t testing.TB, src, dst netip.AddrPort, flags string, seq, ack uint32, payload string) []byte {
	t.Helper()
	ip := ipLayer(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 65000,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P")}
	tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip.(gopacket.SerializableLayer), tc, gopacket.Payload(payload))
}

func udp(t testing.TB, src, dst netip.AddrPort, payload string) []byte {
	t.Helper()
	ip := ipLayer(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip.(gopacket.SerializableLayer), u, gopacket.Payload(payload))
}

func ping4(t testing.TB, src, dst netip.Addr, reply bool, id, seq uint16) []byte {
	t.Helper()
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	return serialize(t, ipLayer(src, dst, layers.IPProtocolICMPv4).(gopacket.SerializableLayer),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}, gopacket.Payload("ping"))
}

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

// decoded is what the independent decoder sees in a packet.
type decoded struct {
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	tcp        *layers.TCP
	udp        *layers.UDP
	icmp4      *layers.ICMPv4
	icmp6      *layers.ICMPv6
	payload    []byte
	gopacketOK bool
}

// decode parses pkt with gopacket and fails the test unless every checksum in it,
// recomputed from scratch, equals the one in the packet.
func decode(t testing.TB, pkt []byte) decoded {
	t.Helper()
	first := layers.LayerTypeIPv4
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode %x: %v", pkt, el.Error())
	}
	var d decoded
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			d.src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			d.dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			nl = l
			ls = append(ls, l)
		case *layers.IPv6:
			d.src, _ = netip.AddrFromSlice(l.SrcIP)
			d.dst, _ = netip.AddrFromSlice(l.DstIP)
			nl = l
			ls = append(ls, l)
		case *layers.TCP:
			d.tcp, d.sport, d.dport = l, uint16(l.SrcPort), uint16(l.DstPort)
			d.payload = l.Payload
			c := *l
			c.SetNetworkLayerForChecksum(nl)
			ls = append(ls, &c, gopacket.Payload(l.Payload))
		case *layers.UDP:
			d.udp, d.sport, d.dport = l, uint16(l.SrcPort), uint16(l.DstPort)
			d.payload = l.Payload
			c := *l
			c.SetNetworkLayerForChecksum(nl)
			ls = append(ls, &c, gopacket.Payload(l.Payload))
		case *layers.ICMPv4:
			d.icmp4 = l
			d.sport, d.dport = l.Id, l.Id
			ls = append(ls, l, gopacket.Payload(l.Payload))
		case *layers.ICMPv6:
			d.icmp6 = l
			c := *l
			c.SetNetworkLayerForChecksum(nl)
			ls = append(ls, &c, gopacket.Payload(l.LayerPayload()))
		}
		if len(ls) > 0 && (d.tcp != nil || d.udp != nil || d.icmp4 != nil || d.icmp6 != nil) {
			break
		}
	}
	// Recompute every checksum from scratch and compare with the packet's bytes.
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("re-serialize: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), pkt) {
		t.Fatalf("checksums differ from a from-scratch computation:\n got  %x\n want %x", pkt, buf.Bytes())
	}
	d.gopacketOK = true
	return d
}
