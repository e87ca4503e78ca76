package tun

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegate/idlegate/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{
		Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv6,
		HdrLen: 0x0102, GSOSize: 1448, CsumStart: 40, CsumOffset: 16,
	}
	b := make([]byte, VirtioNetHdrLen)
	if err := h.Encode(b); err != nil {
		t.Fatal(err)
	}
	// Host byte order: this test runs on little-endian machines (amd64,
	// arm64), as the kernel reads the header there.
	want := []byte{1, 4, 0x02, 0x01, 0xa8, 0x05, 40, 0, 16, 0}
	if !bytes.Equal(b, want) {
		t.Errorf("encoded % x, want % x", b, want)
	}
	var got VirtioNetHdr
	if err := got.Decode(b); err != nil || got != h {
		t.Errorf("decoded %+v, %v; want %+v", got, err, h)
	}
	if err := got.Decode(b[:9]); err == nil {
		t.Error("Decode accepted 9 bytes")
	}
	if err := h.Encode(b[:9]); err == nil {
		t.Error("Encode accepted 9 bytes")
	}
}

// TestClassify: what the device does with each kind of header it reads.
func TestClassify(t *testing.T) {
	tcp4 := tcp4Packet(1000)
	tcp6 := tcp6Packet(1000)
	udp := udp4(netip.MustParseAddrPort("198.18.0.2:1"), netip.MustParseAddrPort("198.19.0.2:2"), make([]byte, 1000))
	cut := tcp4[:500] // IPv4 total length says more
	needs := uint8(VirtioNetHdrFNeedsCsum)
	tests := []struct {
		name string
		h    VirtioNetHdr
		pkt  []byte
		want action
	}{
		{"plain", VirtioNetHdr{}, tcp4, actPass},
		{"data valid", VirtioNetHdr{Flags: VirtioNetHdrFDataValid}, tcp4, actPass},
		{"partial tcp4", VirtioNetHdr{Flags: needs, CsumStart: 20, CsumOffset: 16}, tcp4, actPass},
		{"partial tcp6", VirtioNetHdr{Flags: needs, CsumStart: 40, CsumOffset: 16}, tcp6, actPass},
		{"partial udp4", VirtioNetHdr{Flags: needs, CsumStart: 20, CsumOffset: 6}, udp, actPass},
		{"partial elsewhere", VirtioNetHdr{Flags: needs, CsumStart: 24, CsumOffset: 2}, tcp4, actComplete},
		{"partial past the end", VirtioNetHdr{Flags: needs, CsumStart: 1030, CsumOffset: 16}, tcp4, actDrop},
		{"tso4", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 300, CsumStart: 20, CsumOffset: 16}, tcp4, actPass},
		{"tso6", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv6, GSOSize: 300, CsumStart: 40, CsumOffset: 16}, tcp6, actPass},
		{"uso4", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOUDPL4, GSOSize: 300, CsumStart: 20, CsumOffset: 6}, udp, actPass},
		{"tso ecn", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv4 | VirtioNetHdrGSOECN, GSOSize: 300, CsumStart: 20, CsumOffset: 16}, tcp4, actSegment},
		{"tso4 on ipv6", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 300, CsumStart: 40, CsumOffset: 16}, tcp6, actDrop},
		{"tso without partial checksum", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 300, CsumStart: 20, CsumOffset: 16}, tcp4, actDrop},
		{"tso cut short", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 300, CsumStart: 20, CsumOffset: 16}, cut, actDrop},
		{"tso zero size", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOTCPv4, CsumStart: 20, CsumOffset: 16}, tcp4, actDrop},
		{"ufo", VirtioNetHdr{Flags: needs, GSOType: VirtioNetHdrGSOUDP, GSOSize: 300, CsumStart: 20, CsumOffset: 6}, udp, actDrop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := classify(&tt.h, tt.pkt); got != tt.want {
				t.Errorf("classify = %d, want %d", got, tt.want)
			}
		})
	}
}

// tcp4Packet and tcp6Packet are TCP segments with n bytes of payload and
// lengths set; their checksums are not computed.
func tcp4Packet(n int) []byte {
	p := make([]byte, 40+n)
	p[0], p[9] = 0x45, 6
	p[2], p[3] = byte(len(p)>>8), byte(len(p))
	copy(p[12:], []byte{198, 18, 0, 2, 198, 19, 0, 2})
	p[20+12] = 5 << 4
	return p
}

func tcp6Packet(n int) []byte {
	p := make([]byte, 60+n)
	p[0], p[6] = 0x60, 6
	p[4], p[5] = byte((20+n)>>8), byte(20+n)
	p[40+12] = 5 << 4
	return p
}

func TestOpenFastClose(t *testing.T) {
	needRoot(t)
	for _, wait := range []Wait{WaitPoller, WaitThread} {
		t.Run(map[Wait]string{WaitPoller: "poller", WaitThread: "thread"}[wait], func(t *testing.T) {
			name := testLinkName(t)
			dev, err := OpenFast(name, FastConfig{MTU: 1400, Wait: wait})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dev.Close() })
			if dev.Name() != name || dev.MTU() != 1400 || dev.BatchSize() != DefaultFastBatch || !PassesOffloads(dev) {
				t.Errorf("device: name %q mtu %d batch %d; want %q 1400 %d", dev.Name(), dev.MTU(), dev.BatchSize(), name, DefaultFastBatch)
			}
			if tso, _ := dev.Offloads(); !tso {
				t.Error("the kernel granted no TSO")
			}
			link, err := netlink.LinkByName(name)
			if err != nil || link.Attrs().MTU != 1400 {
				t.Fatalf("link %q: %v, %+v", name, err, link)
			}
			done := make(chan error, 1)
			go func() {
				_, err := dev.Read(makeBufs(4, Headroom+65535), make([]int, 4), Headroom)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("Read returned before Close: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			if err := dev.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("Read after Close: %v, want os.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked 5s after Close")
			}
			if _, err := dev.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Write after Close: %v, want os.ErrClosed", err)
			}
			if err := dev.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := netlink.LinkByName(name); err == nil {
				t.Errorf("link %q still exists after Close", name)
			}
		})
	}
}

// fastPair is two namespaces joined by two FastDevices and a copy pump:
//
//	  netns a                      test process (root netns)                netns b
//	+------------------+       +------------------------------------+     +------------------+
//	| gw0 198.18.0.2/24|<-fd-->| a <-- copy Read(offset)/Write --> b |<-fd->| gw0 198.19.0.2/24|
//	|   fd00:18::2/64  |       |  (no engine: every packet as read)  |     |   fd00:19::2/64  |
//	| routes to b      |       +------------------------------------+     | routes to a      |
//	+------------------+                                                  +------------------+
type fastPair struct {
	nsA, nsB netns.NsHandle
	a, b     *FastDevice

	audited, bad atomic.Uint64 // partial checksums checked by audit
}

// audit checks a packet read with a partial checksum the way a NAT would treat
// it: a copy gets its source address and port rewritten (RFC 1624 updates), its
// checksum revealed and completed in software, and must then be valid as a
// whole (a super-packet as one big packet). This proves the partial sums the
// kernel hands over are what HidePartialChecksum assumes.
func (p *fastPair) audit(buf []byte, offset int) {
	var h VirtioNetHdr
	if h.Decode(buf[offset-VirtioNetHdrLen:]) != nil || h.Flags&VirtioNetHdrFNeedsCsum == 0 {
		return
	}
	pkt := bytes.Clone(buf[offset:])
	var info packet.Info
	if packet.Decode(pkt, &info) != nil {
		p.bad.Add(1)
		return
	}
	to := netip.MustParseAddr("198.19.0.1")
	if info.Version == 6 {
		to = netip.MustParseAddr("fd00:19::1")
	}
	ok := packet.SetSource(pkt, &info, to, info.SrcPort^0x5a5a) &&
		packet.RevealPartialChecksum(pkt, int(h.CsumStart), int(h.CsumOffset)) &&
		packet.CompleteChecksum(pkt, int(h.CsumStart), int(h.CsumOffset)) &&
		packet.ChecksumsValid(pkt, &info)
	p.audited.Add(1)
	if !ok {
		p.bad.Add(1)
	}
}

func newFastPair(t *testing.T, cfg FastConfig, offset int) *fastPair {
	return newFastPairPausing(t, cfg, offset, 0)
}

// newFastPairPausing is newFastPair with a pump that sleeps pause before each
// Read, so that packets queue up and come in full batches.
func newFastPairPausing(t *testing.T, cfg FastConfig, offset int, pause time.Duration) *fastPair {
	t.Helper()
	needRoot(t)
	p := &fastPair{nsA: newUnnamedNamespace(t), nsB: newUnnamedNamespace(t)}
	side := func(ns netns.NsHandle, addr4, addr6, route4, route6 string) *FastDevice {
		name := testLinkName(t)
		dev, err := OpenFast(name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dev.Close() })
		if err := MoveToNamespace(name, ns); err != nil {
			t.Fatal(err)
		}
		err = Configure(ns, name, LinkConfig{
			Rename: "gw0",
			Addrs:  []netip.Prefix{netip.MustParsePrefix(addr4), netip.MustParsePrefix(addr6)},
			Routes: []netip.Prefix{netip.MustParsePrefix(route4), netip.MustParsePrefix(route6)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return dev
	}
	p.a = side(p.nsA, "198.18.0.2/24", "fd00:18::2/64", "198.19.0.0/24", "fd00:19::/64")
	p.b = side(p.nsB, "198.19.0.2/24", "fd00:19::2/64", "198.18.0.0/24", "fd00:18::/64")
	var wg sync.WaitGroup
	copyPackets := func(dst, src *FastDevice) {
		defer wg.Done()
		bufs, sizes := makeBufs(src.BatchSize(), offset+65535), make([]int, src.BatchSize())
		out := make([][]byte, 0, len(bufs))
		for {
			time.Sleep(pause)
			n, err := src.Read(bufs, sizes, offset)
			if err != nil {
				return
			}
			out = out[:0]
			for i := range n {
				out = append(out, bufs[i][:offset+sizes[i]])
				if offset >= VirtioNetHdrLen {
					p.audit(out[i], offset)
				}
			}
			if _, err := dst.Write(out, offset); errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}
	wg.Add(2)
	go copyPackets(p.b, p.a)
	go copyPackets(p.a, p.b)
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
		wg.Wait()
	})
	return p
}

// tcpBulk sends n random bytes from a to b over TCP and checks they arrive
// whole.
func (p *fastPair) tcpBulk(t *testing.T, server netip.Addr, n int) {
	t.Helper()
	var ln net.Listener
	inNamespace(t, p.nsB, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(server, 0).String())
		return err
	})
	defer ln.Close()
	sum := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sum <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		sum <- [32]byte(h.Sum(nil))
	}()
	var c net.Conn
	inNamespace(t, p.nsA, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	})
	want := make([]byte, n)
	rand.Read(want)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(want); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.Close()
	select {
	case got := <-sum:
		if got != sha256.Sum256(want) {
			t.Fatal("the receiver's bytes differ from what was sent")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transfer not done in 30 s")
	}
}

// udpGSO sends one 12000-byte write with UDP_SEGMENT 1200 from a to b: ten
// datagrams that leave a as one USO super-packet where the device allows it.
func (p *fastPair) udpGSO(t *testing.T, server netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	inNamespace(t, p.nsB, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(server, 0).String())
		return err
	})
	defer pc.Close()
	var c *net.UDPConn
	inNamespace(t, p.nsA, func() error {
		cc, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			return err
		}
		c = cc.(*net.UDPConn)
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1200) })
		return errors.Join(err, serr)
	})
	defer c.Close()
	msg := make([]byte, 12000)
	rand.Read(msg)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write with UDP_SEGMENT: %v", err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range 10 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], msg[i*1200:(i+1)*1200]) {
			t.Fatalf("datagram %d differs (%d bytes)", i, n)
		}
	}
}

// TestFastPassesGSO moves TCP bulk transfers and a UDP GSO write between two
// FastDevices, with the offload headers passed through (offset Headroom) and
// with every packet finished in software (offset 0).
func TestFastPassesGSO(t *testing.T) {
	tests := []struct {
		name    string
		cfg     FastConfig
		offset  int
		through bool // super-packets cross whole
	}{
		{"pass-through poller", FastConfig{}, Headroom, true},
		{"pass-through thread", FastConfig{Wait: WaitThread}, Headroom + 6, true},
		{"software", FastConfig{Batch: 4}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFastPair(t, tt.cfg, tt.offset)
			p.tcpBulk(t, netip.MustParseAddr("198.19.0.2"), 8<<20)
			p.tcpBulk(t, netip.MustParseAddr("fd00:19::2"), 8<<20)
			_, uso := p.a.Offloads()
			p.udpGSO(t, netip.MustParseAddr("198.19.0.2"))
			p.udpGSO(t, netip.MustParseAddr("fd00:19::2"))
			st := p.a.Stats()
			t.Logf("client side: %+v", st)
			if st.Dropped != 0 {
				t.Errorf("%d packets dropped", st.Dropped)
			}
			if bad := p.bad.Load(); bad != 0 || tt.through && p.audited.Load() == 0 {
				t.Errorf("partial checksums: %d audited, %d wrong after NAT and completion", p.audited.Load(), bad)
			}
			if tt.through {
				if st.SuperPackets == 0 || st.Segmented != 0 {
					t.Errorf("super-packets passed %d, cut %d; want some passed, none cut", st.SuperPackets, st.Segmented)
				}
			} else {
				if st.SuperPackets != 0 || st.Segmented == 0 || st.Partial != 0 {
					t.Errorf("super-packets passed %d, cut %d, partial %d; want none passed, some cut, none partial", st.SuperPackets, st.Segmented, st.Partial)
				}
			}
			if !uso {
				t.Log("this kernel grants no USO: the UDP writes were segmented by the sender's kernel")
			}
		})
	}
}

func TestOpenFastRejectsBadArguments(t *testing.T) {
	if _, err := OpenFast("a-name-longer-than-15", FastConfig{}); err == nil {
		t.Error("accepted a 21-byte name")
	}
	if _, err := OpenFast("x", FastConfig{MTU: 40}); err == nil {
		t.Error("accepted MTU 40")
	}
	if os.Geteuid() != 0 {
		if _, err := OpenFast("", FastConfig{}); !errors.Is(err, ErrNotPermitted) && !errors.Is(err, ErrNoTUN) {
			t.Errorf("unprivileged OpenFast: %v, want ErrNotPermitted", err)
		}
	}
}

// partialUDP is a buffer holding, at Headroom, an IPv4 UDP datagram with DF set
// as the kernel hands it over with checksum offload: a virtio_net_hdr asking for
// the checksum and the pseudo-header sum in its field, in hidden form.
func partialUDP(src, dst netip.AddrPort, payload []byte) []byte {
	p := udp4(src, dst, payload)
	p[6] = 0x40 // DF
	p[10], p[11] = 0, 0
	c := packet.Checksum(p[:20], 0)
	p[10], p[11] = byte(c>>8), byte(c)
	ps := packet.PseudoHeaderSum(src.Addr(), dst.Addr(), packet.ProtoUDP, len(p)-20)
	ps = ps&0xffff + ps>>16
	ps = ps&0xffff + ps>>16
	p[26], p[27] = byte(ps>>8), byte(ps)
	packet.HidePartialChecksum(p, 20, 6)
	b := make([]byte, Headroom+65535)
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 20, CsumOffset: 6}
	h.Encode(b)
	return b[:Headroom+copy(b[Headroom:], p)]
}

// TestCoalesceUDP: runs of datagrams of one flow become one USO super-packet
// whose segments are the datagrams, and whose partial checksum completes to a
// valid one; anything else is sent alone.
func TestCoalesceUDP(t *testing.T) {
	a := netip.MustParseAddrPort("198.18.0.2:4000")
	b := netip.MustParseAddrPort("198.19.0.2:5201")
	other := netip.MustParseAddrPort("198.18.0.2:4001")
	payload := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	var bufs [][]byte
	var want [][]byte
	for i := range 5 {
		want = append(want, payload(i, 100))
	}
	want = append(want, payload(5, 40)) // a shorter last one ends the run
	for _, p := range want {
		bufs = append(bufs, partialUDP(a, b, p))
	}
	bufs = append(bufs, partialUDP(a, b, payload(6, 100)))     // 6: after a short one: a new run
	bufs = append(bufs, partialUDP(other, b, payload(7, 100))) // 7: another flow
	nodf := partialUDP(a, b, payload(8, 100))                  // 8: no DF
	nodf[Headroom+6] = 0
	bufs = append(bufs, nodf)
	bufs = append(bufs, partialUDP(a, b, payload(9, 100)), partialUDP(a, b, payload(10, 100))) // 9, 10: a run of two

	d := &FastDevice{offl: tcpOffloads | udpOffloads}
	got, next := d.coalesceUDP(bufs, 0, Headroom)
	if next != 6 {
		t.Fatalf("first run ends before %d, want 6", next)
	}
	var h VirtioNetHdr
	h.Decode(got)
	if h.GSOType != VirtioNetHdrGSOUDPL4 || h.GSOSize != 100 || h.Flags != VirtioNetHdrFNeedsCsum || h.CsumStart != 20 || h.CsumOffset != 6 || h.HdrLen != 28 {
		t.Errorf("header %+v", h)
	}
	super := bytes.Clone(got[Headroom:])
	packet.RevealPartialChecksum(super, 20, 6)
	packet.CompleteChecksum(super, 20, 6)
	var info packet.Info
	if err := packet.Decode(super, &info); err != nil || !packet.ChecksumsValid(super, &info) {
		t.Fatalf("super-packet: decode %v, checksums valid %v", err, packet.ChecksumsValid(super, &info))
	}
	g := packet.GSO{Proto: packet.ProtoUDP, L4Off: 20, Size: 100}
	n, err := packet.Segments(super, g)
	if err != nil || n != len(want) {
		t.Fatalf("Segments = %d, %v; want %d", n, err, len(want))
	}
	seg := make([]byte, 200)
	for i := range n {
		m, _ := packet.Segment(seg, super, g, i)
		if !bytes.Equal(seg[28:m], want[i]) {
			t.Errorf("segment %d carries % x, want % x", i, seg[28:m], want[i])
		}
	}
	for _, tc := range []struct{ at, next int }{{6, 7}, {7, 8}, {8, 9}, {9, 11}} {
		if _, next := d.coalesceUDP(bufs, tc.at, Headroom); next != tc.next {
			t.Errorf("run from %d ends before %d, want %d", tc.at, next, tc.next)
		}
	}
	if st := d.Stats(); st.USOWrites != 2 || st.Coalesced != 8 {
		t.Errorf("stats %+v, want 2 USO writes of 8 datagrams", st)
	}
}

// TestFastCoalescesUDPBurst: a burst of small datagrams of one flow crosses as
// USO super-packets (the pump reads them in batches) and arrives whole, in order.
func TestFastCoalescesUDPBurst(t *testing.T) {
	p := newFastPairPausing(t, FastConfig{}, Headroom, 5*time.Millisecond)
	if _, uso := p.a.Offloads(); !uso {
		t.Skip("this kernel grants no USO (Linux 6.2)")
	}
	var pc net.PacketConn
	inNamespace(t, p.nsB, func() (err error) {
		pc, err = net.ListenPacket("udp4", "198.19.0.2:0")
		if err != nil {
			return err
		}
		rc, err := pc.(*net.UDPConn).SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) })
		return errors.Join(err, serr)
	})
	defer pc.Close()
	var c net.Conn
	inNamespace(t, p.nsA, func() (err error) {
		c, err = net.Dial("udp4", pc.LocalAddr().String())
		return err
	})
	defer c.Close()
	const n = 400 // fewer than the TUN queue holds (txqueuelen 500) while the pump pauses
	msg := make([]byte, 64)
	for i := range n {
		msg[0], msg[1] = byte(i>>8), byte(i)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range n {
		m, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v (device b: %+v)", i, n, err, p.b.Stats())
		}
		if m != 64 || int(buf[0])<<8|int(buf[1]) != i {
			t.Fatalf("datagram %d: %d bytes numbered %d", i, m, int(buf[0])<<8|int(buf[1]))
		}
	}
	st := p.b.Stats()
	t.Logf("writing side: %+v", st)
	if st.USOWrites == 0 || st.Coalesced < n/2 {
		t.Errorf("%d datagrams went in %d USO writes; want most of the %d coalesced", st.Coalesced, st.USOWrites, n)
	}
}

// TestFastNoAllocs: a Write and a Read with headroom allocate nothing. An ICMP
// echo request written to the device is answered by the namespace's kernel, and
// the reply is read back.
func TestFastNoAllocs(t *testing.T) {
	needRoot(t)
	for _, wait := range []Wait{WaitPoller, WaitThread} {
		t.Run(map[Wait]string{WaitPoller: "poller", WaitThread: "thread"}[wait], func(t *testing.T) {
			ns := newUnnamedNamespace(t)
			name := testLinkName(t)
			dev, err := OpenFast(name, FastConfig{Wait: wait})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dev.Close() })
			if err := MoveToNamespace(name, ns); err != nil {
				t.Fatal(err)
			}
			err = Configure(ns, name, LinkConfig{
				Addrs:  []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
				Routes: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24")},
			})
			if err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, Headroom+28+56)
			p := echo[Headroom:]
			p[0], p[8], p[9] = 0x45, 64, 1 // IPv4, TTL 64, ICMP
			p[2], p[3] = 0, byte(len(p))
			copy(p[12:], []byte{198, 19, 0, 9, 198, 18, 0, 2})
			c := packet.Checksum(p[:20], 0)
			p[10], p[11] = byte(c>>8), byte(c)
			p[20], p[24], p[25] = 8, 0x12, 0x34 // echo request, id 0x1234
			c = packet.Checksum(p[20:], 0)
			p[22], p[23] = byte(c>>8), byte(c)
			out := [][]byte{echo}
			bufs, sizes := makeBufs(4, Headroom+65535), make([]int, 4)
			ping := func() {
				if _, err := dev.Write(out, Headroom); err != nil {
					t.Fatal(err)
				}
				for {
					n, err := dev.Read(bufs, sizes, Headroom)
					if err != nil {
						t.Fatal(err)
					}
					for i := range n {
						// The echo reply; IPv6 chatter of the new link is skipped.
						if q := bufs[i][Headroom : Headroom+sizes[i]]; len(q) >= 28 && q[0] == 0x45 && q[20] == 0 {
							return
						}
					}
				}
			}
			ping()
			if allocs := testing.AllocsPerRun(100, ping); allocs != 0 {
				t.Errorf("%.1f allocations per Write and Read, want 0", allocs)
			}
		})
	}
}
