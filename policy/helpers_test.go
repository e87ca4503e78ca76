package policy

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/idlegate/idlegate/internal/pkttest"
)

// Test addresses: the lab's.
var (
	client4 = netip.MustParseAddr("198.18.0.2")
	server4 = netip.MustParseAddr("198.19.0.2")
	out4    = netip.MustParseAddr("198.19.0.1")
	gw4     = netip.MustParseAddr("198.18.0.1") // the gateway's address toward the client
	client6 = netip.MustParseAddr("fd00:18::2")
	server6 = netip.MustParseAddr("fd00:19::2")
	out6    = netip.MustParseAddr("fd00:19::1")
	gw6     = netip.MustParseAddr("fd00:18::1")
	t0      = time.Unix(1_000_000, 0)
)

// labNets are the lab's networks (lab.InsideNet4 and so on; policy does not import
// lab), with its router addresses toward the client and its NAT addresses as the
// gateway's own.
var labNets = Networks{
	Inside:  []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("fd00:18::/64")},
	Outside: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("fd00:19::/64")},
	Gateway: []netip.Addr{gw4, gw6, out4, out6},
}

// Packet builders: gopacket, independent of the packet package under test.
var (
	tcp = pkttest.TCP
	udp = pkttest.UDP
)

func ping4(t testing.TB, src, dst netip.Addr, reply bool, id, seq uint16) []byte {
	t.Helper()
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	return pkttest.Serialize(t, pkttest.IPLayer(src, dst, layers.IPProtocolICMPv4).(gopacket.SerializableLayer),
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
