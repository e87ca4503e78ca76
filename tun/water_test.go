package tun

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// needRoot skips a test that needs root, except in CI where it must run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root for network namespaces, and CI must not skip it: run the tests as root")
	}
	t.Skip("needs root for network namespaces: run as root or via `make test` in CI")
}

// testLinkName returns a TUN name unique to this run: "igt" + 8 hex digits.
func testLinkName(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "igt" + hex.EncodeToString(b)
}

func TestTranslateOpenError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
		text string
	}{
		{name: "no device node", err: syscall.ENOENT, want: ErrNoTUN, text: "modprobe tun"},
		{name: "no driver", err: syscall.ENODEV, want: ErrNoTUN, text: "modprobe tun"},
		{name: "not root", err: os.NewSyscallError("ioctl", syscall.EPERM), want: ErrNotPermitted, text: "CAP_NET_ADMIN"},
		{name: "no access to node", err: &fs.PathError{Op: "open", Path: "/dev/net/tun", Err: syscall.EACCES}, want: ErrNotPermitted, text: "root"},
		{name: "name taken", err: os.NewSyscallError("ioctl", syscall.EBUSY), want: syscall.EBUSY, text: "in use"},
		{name: "other", err: syscall.EINVAL, want: syscall.EINVAL, text: "tun \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := translateOpenError("x", tt.err)
			if !errors.Is(got, tt.want) || !strings.Contains(got.Error(), tt.text) {
				t.Errorf("translateOpenError(%v) = %q; want errors.Is %v and text %q", tt.err, got, tt.want, tt.text)
			}
		})
	}
}

func TestOpenWaterRejectsBadArguments(t *testing.T) {
	if _, err := OpenWater("a-name-longer-than-15", 0); err == nil {
		t.Error("OpenWater with a 21-byte name succeeded")
	}
	if _, err := OpenWater("x", 40); err == nil {
		t.Error("OpenWater with MTU 40 succeeded")
	}
}

func TestWaterOpenClose(t *testing.T) {
	needRoot(t)
	name := testLinkName(t)
	dev, err := OpenWater(name, 1400)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })

	if dev.Name() != name || dev.MTU() != 1400 || dev.BatchSize() != 1 {
		t.Errorf("device: name %q mtu %d batch %d; want %q 1400 1", dev.Name(), dev.MTU(), dev.BatchSize(), name)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %q after OpenWater: %v", name, err)
	}
	if link.Attrs().MTU != 1400 {
		t.Errorf("kernel MTU %d, want 1400", link.Attrs().MTU)
	}

	// The link is down, so nothing arrives and Read blocks until Close.
	done := make(chan error, 1)
	go func() {
		_, err := dev.Read(makeBufs(1, 2000), make([]int, 1), 0)
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
		t.Fatal("Read still blocked 5s after Close: the descriptor is not in the netpoller")
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("link %q still exists after Close", name)
	}
}

// TestWaterInNamespace moves a TUN into a fresh unnamed namespace, configures
// it and passes UDP both ways between the device and a socket in there.
//
//	  test process (root netns)          unnamed netns (dies with its handle)
//	+--------------------------+       +-----------------------------------+
//	| dev := OpenWater(igt...) |<--fd->| gw0 198.18.0.2/24   fd00:18::2/64 |
//	|   reads what the socket  |       | routes 198.19.0.0/24 fd00:19::/64 |
//	|   sends; writes to it    |       | UDP sockets                       |
//	+--------------------------+       +-----------------------------------+
func TestWaterInNamespace(t *testing.T) {
	needRoot(t)
	ns := newUnnamedNamespace(t)
	name := testLinkName(t)
	dev, err := OpenWater(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })

	if err := MoveToNamespace(name, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("link %q still in the root namespace after MoveToNamespace", name)
	}
	cfg := LinkConfig{
		Rename: "gw0",
		MTU:    1450,
		Addrs:  []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("fd00:18::2/64")},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("fd00:19::/64")},
	}
	if err := Configure(ns, name, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Configure(ns, "gw0", LinkConfig{Addrs: cfg.Addrs, Routes: cfg.Routes}); err != nil {
		t.Fatalf("Configure again: %v", err)
	}
	if got := dev.Name(); got != "gw0" {
		t.Errorf("Name() after rename = %q, want gw0", got)
	}

	packets := readAll(t, dev)
	for _, tc := range []struct{ network, local, remote string }{
		{"udp4", "198.18.0.2:0", "198.19.0.9:7"},
		{"udp6", "[fd00:18::2]:0", "[fd00:19::9]:7"},
	} {
		t.Run(tc.network+" out", func(t *testing.T) {
			var conn net.Conn
			inNamespace(t, ns, func() (err error) {
				conn, err = net.Dial(tc.network, tc.remote)
				return err
			})
			defer conn.Close()
			if _, err := conn.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			src := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			waitFor(t, packets, func(p []byte) bool {
				return udpFrom(p, src) && bytes.HasSuffix(p, []byte("hello"))
			})
		})
	}

	t.Run("udp4 in", func(t *testing.T) {
		var pc net.PacketConn
		inNamespace(t, ns, func() (err error) {
			pc, err = net.ListenPacket("udp4", "198.18.0.2:0")
			return err
		})
		defer pc.Close()
		dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		src := netip.MustParseAddrPort("198.19.0.9:4242")
		const offset = 8
		pkt := append(make([]byte, offset), udp4(src, dst, []byte("world"))...)
		if n, err := dev.Write([][]byte{pkt}, offset); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != "world" || from.(*net.UDPAddr).AddrPort() != src {
			t.Errorf("socket got %q from %v, want %q from %v", buf[:n], from, "world", src)
		}
	})
}

// newUnnamedNamespace creates a network namespace that exists only as long as
// the returned handle (closed at cleanup), so no leftover can outlive the test.
func newUnnamedNamespace(t *testing.T) netns.NsHandle {
	t.Helper()
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result)
	go func() {
		// netns.New switches this thread; it stays locked so that the
		// runtime discards the thread when the goroutine ends.
		runtime.LockOSThread()
		ns, err := netns.New()
		c <- result{ns, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("new namespace: %v", r.err)
	}
	t.Cleanup(func() { r.ns.Close() })
	return r.ns
}

// inNamespace runs fn on a thread inside ns; sockets it opens stay in ns. The
// thread is discarded afterwards. fn must not call t.Fatal.
func inNamespace(t *testing.T, ns netns.NsHandle, fn func() error) {
	t.Helper()
	c := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			c <- err
			return
		}
		c <- fn()
	}()
	if err := <-c; err != nil {
		t.Fatal(err)
	}
}

// readAll reads dev until it is closed at cleanup and hands each packet on.
func readAll(t *testing.T, dev Device) <-chan []byte {
	c := make(chan []byte, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := makeBufs(1, 65535), make([]int, 1)
		for {
			n, err := dev.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				select {
				case c <- bytes.Clone(bufs[i][:sizes[i]]):
				default: // nobody is looking for it
				}
			}
		}
	}()
	t.Cleanup(func() { dev.Close(); <-done })
	return c
}

// waitFor takes packets until match accepts one; router solicitations and MLD
// reports the kernel sends on the new link are skipped.
func waitFor(t *testing.T, packets <-chan []byte, match func([]byte) bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p := <-packets:
			if match(p) {
				return
			}
		case <-timeout:
			t.Fatal("no matching packet from the device within 5s")
		}
	}
}

// udpFrom reports whether p is a UDP packet with source src.
func udpFrom(p []byte, src netip.AddrPort) bool {
	var (
		addr  netip.Addr
		proto byte
		l4    []byte
	)
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		addr, proto, l4 = netip.AddrFrom4([4]byte(p[12:16])), p[9], p[int(p[0]&0xf)*4:]
	case len(p) >= 40 && p[0]>>4 == 6:
		addr, proto, l4 = netip.AddrFrom16([16]byte(p[8:24])), p[6], p[40:]
	default:
		return false
	}
	return proto == syscall.IPPROTO_UDP && len(l4) >= 8 && addr == src.Addr() &&
		binary.BigEndian.Uint16(l4) == src.Port()
}

// udp4 builds an IPv4/UDP packet; the UDP checksum is left zero (none).
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = syscall.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func ExampleNewChannel() {
	dev := NewChannel("mem0", 0)
	dev.Inbound <- []byte{0x45, 0, 0, 20} // as if the kernel sent it

	bufs, sizes := [][]byte{make([]byte, 1500)}, make([]int, 1)
	dev.Read(bufs, sizes, 0)
	dev.Write([][]byte{bufs[0][:sizes[0]]}, 0) // Write sends the whole slice: cut it to the packet

	fmt.Printf("% x\n", <-dev.Outbound)
	// Output: 45 00 00 14
}
