package conntrack

import (
	"net/netip"
	"strconv"
)

// IP protocol numbers the table knows by name.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Key is one direction of a flow as it appears on the wire: a 5-tuple.
// It is comparable and pointer-free, so it serves as a map key as it is.
// IPv4 addresses are stored v4-mapped (::ffff:a.b.c.d) in 16 bytes.
// For ICMP and ICMPv6 echo the echo identifier is in both port fields, so
// that an echo reply's key is the Reply of its request's key.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// MakeKey builds the key of a packet from src to dst.
func MakeKey(proto uint8, src, dst netip.AddrPort) Key {
	return Key{
		Src:     src.Addr().As16(),
		Dst:     dst.Addr().As16(),
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Proto:   proto,
	}
}

// Reply returns the key of a packet travelling the other way: the ends swapped.
func (k Key) Reply() Key {
	return Key{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
}

// SrcAddr returns the source address, IPv4 unmapped.
func (k Key) SrcAddr() netip.Addr { return netip.AddrFrom16(k.Src).Unmap() }

// DstAddr returns the destination address, IPv4 unmapped.
func (k Key) DstAddr() netip.Addr { return netip.AddrFrom16(k.Dst).Unmap() }

// SrcAddrPort returns the source address, IPv4 unmapped, and port.
func (k Key) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(k.SrcAddr(), k.SrcPort) }

// DstAddrPort returns the destination address, IPv4 unmapped, and port.
func (k Key) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(k.DstAddr(), k.DstPort) }

// String formats the key as "tcp 198.18.0.2:40000 -> 198.19.0.2:80";
// ICMP echo as "icmp 198.18.0.2 -> 198.19.0.2 id 7".
func (k Key) String() string {
	name := ProtoName(k.Proto)
	if k.isICMP() {
		return name + " " + k.SrcAddr().String() + " -> " + k.DstAddr().String() +
			" id " + strconv.Itoa(int(k.SrcPort))
	}
	return name + " " + k.SrcAddrPort().String() + " -> " + k.DstAddrPort().String()
}

func (k Key) isICMP() bool { return k.Proto == ProtoICMP || k.Proto == ProtoICMPv6 }

// ProtoName returns the lower-case name of an IP protocol number
// ("tcp", "udp", "icmp", "icmpv6"), or the number in decimal.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// Dir is the direction of a packet relative to the entry it belongs to.
type Dir uint8

const (
	// Original is the direction of the packet that created the entry.
	Original Dir = 0
	// Reply is the opposite direction.
	Reply Dir = 1
)

func (d Dir) String() string {
	switch d {
	case Original:
		return "original"
	case Reply:
		return "reply"
	}
	return "dir(" + strconv.Itoa(int(d)) + ")"
}
