package gateway_test

// Raw access to a lab's gw0 from inside its namespace, for tests that must put bytes
// on the wire no kernel stack would send (bad checksums, spoofed sources, garbage)
// and see exactly what the gateway let through:
//
//	NAME-client netns                gateway                NAME-server netns
//	+--------------------+       +-------------+       +--------------------+
//	| rawLink.send ----> | gw0 ->|  inside TUN |       |                    |
//	|                    |       |   engine    |-> gw0 | ----> sniffer.got  |
//	+--------------------+       +-------------+       +--------------------+
//
// An AF_PACKET socket on a TUN link (no link-layer header) writes the IP packet as
// given into the TUN, toward the gateway, and reads the IP packets the gateway
// writes to it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// linkIndex is gw0's interface index inside namespace ns.
func linkIndex(t *testing.T, ns string) int {
	t.Helper()
	var idx int
	err := lab.Do(ns, func() error {
		i, err := net.InterfaceByName(lab.LinkName)
		if err == nil {
			idx = i.Index
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", lab.LinkName, ns, err)
	}
	return idx
}

// rawLink writes raw IP packets into gw0 of one namespace: toward the gateway.
type rawLink struct {
	fd      int
	ifindex int
	sent    atomic.Int64
}

// openRawLink opens a sending AF_PACKET socket (protocol 0: it receives nothing) on
// gw0 in namespace ns, closed at cleanup.
func openRawLink(t *testing.T, ns string) *rawLink {
	t.Helper()
	l := &rawLink{ifindex: linkIndex(t, ns)}
	err := lab.Do(ns, func() (err error) {
		l.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(l.fd) })
	return l
}

// send writes one packet. Its link-layer protocol follows the version nibble (IPv6
// for 6, else IPv4); the TUN does not look at it.
func (l *rawLink) send(pkt []byte) error {
	proto := uint16(unix.ETH_P_IP)
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		proto = unix.ETH_P_IPV6
	}
	err := unix.Sendto(l.fd, pkt, 0, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: l.ifindex})
	if err == nil {
		l.sent.Add(1)
	}
	return err
}

// sniffer keeps every packet that arrives on gw0 of one namespace, from the gateway.
type sniffer struct {
	ns   string
	fd   int
	stop atomic.Bool
	done chan struct{}

	mu  sync.Mutex
	got [][]byte
}

// sniff starts capturing what the gateway writes to gw0 in namespace ns (outgoing
// packets of the namespace itself are ignored); Stop ends it. It is stopped at
// cleanup too.
func sniff(t *testing.T, ns string) *sniffer {
	t.Helper()
	s := &sniffer{ns: ns, done: make(chan struct{})}
	idx := linkIndex(t, ns)
	err := lab.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		return errors.Join(
			unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20),
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000}),
			unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}),
		)
	})
	if err != nil {
		t.Fatalf("sniff gw0 in %s: %v", ns, err)
	}
	go s.loop()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 1<<16)
	for !s.stop.Load() {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // EAGAIN at the timeout, EINTR
		}
		p := append([]byte(nil), buf[:n]...)
		s.mu.Lock()
		s.got = append(s.got, p)
		s.mu.Unlock()
	}
}

// Stop ends the capture and returns what arrived and how many packets the kernel
// dropped for want of buffer (a capture that lost packets proves less).
func (s *sniffer) Stop() (got [][]byte, lost uint32) {
	if !s.stop.Swap(true) {
		<-s.done
		if st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			lost = st.Drops
		}
		unix.Close(s.fd)
	} else {
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got, lost
}

// Raw packet builders, independent of the packet package under test: they write what
// they are told, and compute the checksums they are asked for.

// sum16 is the ones' complement sum of b folded to 16 bits, starting from init.
func sum16(b []byte, init uint32) uint16 {
	s := init
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudoSum is the TCP/UDP/ICMPv6 pseudo-header sum of a segment of length n.
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var s uint32
	for _, a := range []netip.Addr{src, dst} {
		b := a.AsSlice()
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	return s + uint32(proto) + uint32(n)&0xffff + uint32(n)>>16
}

// ip4Header is a 20-byte IPv4 header with a correct checksum; totalLen is written as
// given.
func ip4Header(src, dst netip.Addr, proto uint8, id, flagsFrag uint16, totalLen int) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(totalLen))
	binary.BigEndian.PutUint16(h[4:], id)
	binary.BigEndian.PutUint16(h[6:], flagsFrag)
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], ^sum16(h, 0))
	return h
}

// ip6Header is a 40-byte IPv6 header; payloadLen is written as given.
func ip6Header(src, dst netip.Addr, next uint8, payloadLen int) []byte {
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, next, 64
	binary.BigEndian.PutUint16(h[4:], uint16(payloadLen))
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return h
}

// ipPacket wraps a transport segment in an IP header of src's family, lengths right.
func ipPacket(src, dst netip.Addr, proto uint8, seg []byte) []byte {
	if src.Is4() {
		return append(ip4Header(src, dst, proto, 1, 0x4000, 20+len(seg)), seg...)
	}
	return append(ip6Header(src, dst, proto, len(seg)), seg...)
}

// tcpSeg is a TCP segment with its checksum for src -> dst.
func tcpSeg(src, dst netip.AddrPort, flags uint8, seq, ack uint32, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], 65000)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[16:], ^sum16(b, pseudoSum(src.Addr(), dst.Addr(), 6, len(b))))
	return b
}

// udpSeg is a UDP datagram with its checksum for src -> dst.
func udpSeg(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	c := ^sum16(b, pseudoSum(src.Addr(), dst.Addr(), 17, len(b)))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// icmpMsg is an ICMP (IPv4) or ICMPv6 message with its checksum for src -> dst.
func icmpMsg(src, dst netip.Addr, typ, code uint8, rest []byte) []byte {
	b := append([]byte{typ, code, 0, 0}, rest...)
	var init uint32
	if src.Is6() {
		init = pseudoSum(src, dst, 58, len(b))
	}
	binary.BigEndian.PutUint16(b[2:], ^sum16(b, init))
	return b
}

// icmpProto is the IP protocol of ICMP for src's family.
func icmpProto(src netip.Addr) uint8 {
	if src.Is4() {
		return 1
	}
	return 58
}

// routable reports why a packet the gateway wrote toward side to must not have
// crossed, or "" if a router between the lab's networks could have forwarded it:
// it decodes, its IPv4 header checksum is right, neither address is a martian, the
// source belongs to the other side (or, toward the server under NAT, is the NAT
// address) and the destination to side to. Written with netip prefixes, apart from
// the engine's own checks.
func routable(pkt []byte, to policy.Side, nat bool) string {
	var p packet.Info
	if err := packet.Decode(pkt, &p); err != nil {
		return fmt.Sprintf("does not decode (%v)", err)
	}
	if p.Version == 4 && sum16(pkt[:int(pkt[0]&0x0f)*4], 0) != 0xffff {
		return "has a bad IPv4 header checksum"
	}
	nets := gateway.LabNetworks()
	in := func(a netip.Addr, side policy.Side) bool {
		list := nets.Inside
		if side == policy.Outside {
			list = nets.Outside
		}
		for _, pfx := range list {
			if pfx.Contains(a) {
				return true
			}
		}
		return false
	}
	martian := func(a netip.Addr) bool {
		for _, s := range []string{"0.0.0.0/8", "255.255.255.255/32", "198.18.0.255/32", "198.19.0.255/32", "224.0.0.0/4",
			"127.0.0.0/8", "169.254.0.0/16", "::/128", "::1/128", "::ffff:0:0/96", "ff00::/8", "fe80::/10"} {
			if netip.MustParsePrefix(s).Contains(a) {
				return true
			}
		}
		return false
	}
	isNAT := p.Src == lab.NATAddr4 || p.Src == lab.NATAddr6
	switch {
	case martian(p.Src) || martian(p.Dst):
		return fmt.Sprintf("is a martian %v -> %v", p.Src, p.Dst)
	case isNAT && !(nat && to == policy.Outside):
		return fmt.Sprintf("comes from the NAT address %v", p.Src)
	case !isNAT && !in(p.Src, 1-to):
		return fmt.Sprintf("comes from %v, which is not on the %v side", p.Src, 1-to)
	case !in(p.Dst, to) || p.Dst == lab.NATAddr4 || p.Dst == lab.NATAddr6:
		return fmt.Sprintf("goes to %v, which is not a host on the %v side", p.Dst, to)
	}
	return ""
}

// waitCounted waits until the gateway has read at least n packets arriving on side,
// or d passes. It paces raw writes to what the gateway takes in, so that a test
// measures the gateway and not how fast a full TUN queue drops.
func waitCounted(run *gateway.Running, side policy.Side, n uint64, d time.Duration) {
	deadline := time.Now().Add(d)
	for run.Gateway.Stats()[side].RxPackets < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
}
