package replay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/internal/pkttest"
	"github.com/idlegate/idlegate/policy"
)

// Test addresses: the lab's.
var (
	client4 = netip.MustParseAddr("198.18.0.2")
	server4 = netip.MustParseAddr("198.19.0.2")
	client6 = netip.MustParseAddr("fd00:18::2")
	server6 = netip.MustParseAddr("fd00:19::2")
	t0      = time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// capPkt is one IP packet of a capture under construction.
type capPkt struct {
	at    time.Duration // since t0
	ip    []byte
	iface int
	note  string
}

// testCapture builds a capture packet by packet, in time order.
type testCapture struct {
	t    testing.TB
	pkts []capPkt
}

func newCapture(t testing.TB) *testCapture { return &testCapture{t: t} }

// Packet builders: gopacket, independent of the packet package under test.
var (
	tcpPkt = pkttest.TCP
	udpPkt = pkttest.UDP
)

func (c *testCapture) add(at time.Duration, ip []byte) int {
	c.pkts = append(c.pkts, capPkt{at: at, ip: ip})
	return len(c.pkts) // the record number of this packet
}

// conn is a TCP connection in a capture, tracking sequence numbers.
type conn struct {
	c          *testCapture
	cli, srv   netip.AddrPort
	cseq, sseq uint32
}

// open adds a handshake at at (SYN, SYN-ACK +1 ms, ACK +2 ms).
func (c *testCapture) open(at time.Duration, cli, srv netip.AddrPort) *conn {
	cn := &conn{c: c, cli: cli, srv: srv, cseq: 1000, sseq: 5000}
	c.add(at, tcpPkt(c.t, cli, srv, "S", cn.cseq, 0, ""))
	c.add(at+time.Millisecond, tcpPkt(c.t, srv, cli, "SA", cn.sseq, cn.cseq+1, ""))
	cn.cseq++
	cn.sseq++
	c.add(at+2*time.Millisecond, tcpPkt(c.t, cli, srv, "A", cn.cseq, cn.sseq, ""))
	return cn
}

// send adds a data segment from the client (or the server) at at and its ACK 1 ms
// later; it returns the record number of the data segment.
func (cn *conn) send(at time.Duration, fromClient bool, payload string) int {
	c := cn.c
	if fromClient {
		n := c.add(at, tcpPkt(c.t, cn.cli, cn.srv, "PA", cn.cseq, cn.sseq, payload))
		cn.cseq += uint32(len(payload))
		c.add(at+time.Millisecond, tcpPkt(c.t, cn.srv, cn.cli, "A", cn.sseq, cn.cseq, ""))
		return n
	}
	n := c.add(at, tcpPkt(c.t, cn.srv, cn.cli, "PA", cn.sseq, cn.cseq, payload))
	cn.sseq += uint32(len(payload))
	c.add(at+time.Millisecond, tcpPkt(c.t, cn.cli, cn.srv, "A", cn.cseq, cn.sseq, ""))
	return n
}

// sendOnly adds a data segment without an answer (the box ate it).
func (cn *conn) sendOnly(at time.Duration, fromClient bool, payload string) int {
	c := cn.c
	if fromClient {
		n := c.add(at, tcpPkt(c.t, cn.cli, cn.srv, "PA", cn.cseq, cn.sseq, payload))
		cn.cseq += uint32(len(payload))
		return n
	}
	n := c.add(at, tcpPkt(c.t, cn.srv, cn.cli, "PA", cn.sseq, cn.cseq, payload))
	cn.sseq += uint32(len(payload))
	return n
}

// Link-layer framings for a raw IP packet.
func frame(link layers.LinkType, ip []byte) []byte {
	etype := uint16(0x0800)
	if ip[0]>>4 == 6 {
		etype = 0x86dd
	}
	switch int(link) {
	case linkEthernet: // with one 802.1Q tag
		b := make([]byte, 18, 18+len(ip))
		copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
		copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
		binary.BigEndian.PutUint16(b[12:], 0x8100)
		binary.BigEndian.PutUint16(b[14:], 42)
		binary.BigEndian.PutUint16(b[16:], etype)
		return append(b, ip...)
	case linkSLL:
		b := make([]byte, 16, 16+len(ip))
		binary.BigEndian.PutUint16(b[2:], 1)
		binary.BigEndian.PutUint16(b[4:], 6)
		binary.BigEndian.PutUint16(b[14:], etype)
		return append(b, ip...)
	case linkSLL2:
		b := make([]byte, 20, 20+len(ip))
		binary.BigEndian.PutUint16(b[0:], etype)
		binary.BigEndian.PutUint32(b[4:], 2)
		binary.BigEndian.PutUint16(b[8:], 1)
		b[11] = 6
		return append(b, ip...)
	}
	return ip
}

// pcap writes the capture as a classic pcap of the given link type.
func (c *testCapture) pcap(link layers.LinkType) []byte {
	c.t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, link); err != nil {
		c.t.Fatal(err)
	}
	for _, p := range c.pkts {
		b := frame(link, p.ip)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(p.at), CaptureLength: len(b), Length: len(b)}, b); err != nil {
			c.t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// pcapng writes the capture as a pcapng with one Ethernet interface.
func (c *testCapture) pcapng() []byte {
	c.t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range c.pkts {
		b := frame(layers.LinkTypeEthernet, p.ip)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(p.at), CaptureLength: len(b), Length: len(b)}, b); err != nil {
			c.t.Fatal(err)
		}
	}
	w.Flush()
	return buf.Bytes()
}

func profile(t testing.TB, name string, sets ...string) Profile {
	t.Helper()
	p, err := policy.ProfilePolicy(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(sets); i += 2 {
		if err := p.Set(sets[i], sets[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return Profile{Name: name, Policy: p}
}

func run(t testing.TB, b []byte, opt Options) *Report {
	t.Helper()
	r, err := Run("test.pcap", bytes.NewReader(b), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func captureInfo(ts time.Time, b []byte, iface int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b), InterfaceIndex: iface}
}
