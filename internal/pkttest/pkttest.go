// Package pkttest builds IP packets for tests with gopacket, an encoder independent of
// idlegate's own packet package, so that tests of the engine and of replay check
// idlegate against someone else's idea of a valid packet. Every packet has correct
// lengths and checksums. It is for _test.go files only.
package pkttest

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// IPLayer is an IPv4 or IPv6 header (by src's family) carrying proto, TTL 64.
func IPLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.NetworkLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// Serialize encodes layers with lengths and checksums computed, into a new slice.
func Serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TCP builds a TCP segment with window 65000; flags is a string of S, A, F, R, P.
func TCP(t testing.TB, src, dst netip.AddrPort, flags string, seq, ack uint32, payload string) []byte {
	t.Helper()
	ip := IPLayer(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 65000,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), FIN: strings.Contains(flags, "F"),
		RST: strings.Contains(flags, "R"), PSH: strings.Contains(flags, "P")}
	tc.SetNetworkLayerForChecksum(ip)
	return Serialize(t, ip.(gopacket.SerializableLayer), tc, gopacket.Payload(payload))
}

// UDP builds a UDP datagram.
func UDP(t testing.TB, src, dst netip.AddrPort, payload string) []byte {
	t.Helper()
	ip := IPLayer(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	u.SetNetworkLayerForChecksum(ip)
	return Serialize(t, ip.(gopacket.SerializableLayer), u, gopacket.Payload(payload))
}
