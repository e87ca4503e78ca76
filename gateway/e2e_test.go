package gateway_test

// End-to-end tests with real kernel TCP stacks. Each test brings up its own lab (a
// unique name "e2e-XXXXXX" and a private run base), so tests run in parallel:
//
//	   e2e-XXXXXX-client netns          test process (root netns)            e2e-XXXXXX-server netns
//	+-----------------------+      +------------------------------+      +-----------------------+
//	| gw0 198.18.0.2/24     |      | gateway.StartLab             |      | gw0 198.19.0.2/24     |
//	|     fd00:18::2/64     |<-fd->| inside TUN    outside TUN    |<-fd->|     fd00:19::2/64     |
//	| TCP dialers (net.Dial |      |   policy.Engine (+NAT to     |      | TCP echo listener     |
//	| inside lab.Do)        |      |   198.19.0.1, fd00:19::1)    |      | (net.Listen inside    |
//	| routes 198.19.0.0/24, |      | control API: RunBase/NAME/   |      | lab.Do); routes       |
//	|   fd00:19::/64        |      |   control.sock               |      | 198.18.0.0/24, fd00:18::/64
//	+-----------------------+      | pcap: RunBase/run.pcapng     |      +-----------------------+
//	                               +------------------------------+
//
// No traffic leaves the two namespaces; the control API is a unix socket. Every lab
// is taken down by t.Cleanup, with lab.Cleanup as a safety net. The pcap of a failed
// test is kept and its path logged.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root for network namespaces, and CI must not skip it: run the tests as root")
	}
	t.Skip("needs root for network namespaces; run as root or with make test in CI")
}

// family is one IP version of the lab's addresses.
type family struct {
	name                string
	client, server, nat netip.Addr
}

var (
	ipv4 = family{"ipv4", lab.ClientAddr4, lab.ServerAddr4, lab.NATAddr4}
	ipv6 = family{"ipv6", lab.ClientAddr6, lab.ServerAddr6, lab.NATAddr6}
)

// devices are the TUN device kinds every end-to-end test runs on, each in its own
// lab: the fast device (offloads, batches) and the portable water device.
var devices = []string{lab.DeviceFast, lab.DeviceWater}

// onBothDevices runs test once per device kind, in parallel sub-tests named after
// the device; startLab reads the device from that name.
func onBothDevices(t *testing.T, test func(t *testing.T)) {
	t.Parallel()
	for _, dev := range devices {
		t.Run(dev, func(t *testing.T) {
			t.Parallel()
			test(t)
		})
	}
}

// deviceOf is the device kind in t's name (see onBothDevices), or auto.
func deviceOf(t *testing.T) string {
	for _, part := range strings.Split(t.Name(), "/") {
		if slices.Contains(devices, part) {
			return part
		}
	}
	return lab.DeviceAuto
}

// strictPolicy is Linux's defaults with a short ESTABLISHED timeout and the orphan rule given.
func strictPolicy(established time.Duration, orphan policy.Orphan) policy.Policy {
	p := policy.Default()
	p.Timeouts.TCP.Established = policy.Duration(established)
	p.Orphan = orphan
	return p
}

// startLab brings up a lab with a fresh name and run base and the policy pol,
// recording a pcap, and tears it all down at cleanup.
func startLab(t *testing.T, pol policy.Policy) *gateway.Running {
	t.Helper()
	return startLabOpts(t, pol, gateway.LabOptions{})
}

// startLabOpts is startLab with options; an empty opts.Pcap records to the run base.
func startLabOpts(t *testing.T, pol policy.Policy, opts gateway.LabOptions) *gateway.Running {
	t.Helper()
	needRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	name := "e2e-" + hex.EncodeToString(b)
	// A short base: the control socket path must fit in sun_path (108 bytes).
	base, err := os.MkdirTemp("", "ig-")
	if err != nil {
		t.Fatal(err)
	}
	pcapPath := filepath.Join(base, "run.pcapng")
	if opts.Pcap == "" {
		opts.Pcap = pcapPath
	}
	t.Cleanup(func() {
		if t.Failed() {
			kept := filepath.Join(os.TempDir(), name+".pcapng")
			if os.Rename(pcapPath, kept) == nil {
				t.Logf("what crossed the gateway is kept in %s", kept)
			}
		}
		os.RemoveAll(base)
	})
	t.Cleanup(func() { lab.Cleanup(name, base) }) // safety net: normally there is nothing left
	run, err := gateway.StartLab(context.Background(), lab.Config{Name: name, RunBase: base, Device: deviceOf(t)}, pol, opts)
	if err != nil {
		t.Fatalf("StartLab %s: %v", name, err)
	}
	if want := deviceOf(t); want != lab.DeviceAuto && run.Lab.Device != want {
		t.Fatalf("lab %s runs on the %s device, want %s", name, run.Lab.Device, want)
	}
	t.Cleanup(func() {
		if err := run.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return run
}

// echoServer echoes every byte it reads on every connection it accepts, in the
// server namespace.
type echoServer struct {
	addr     netip.AddrPort
	peers    chan netip.AddrPort // the remote end of each accepted connection
	received atomic.Int64        // bytes read, all connections

	mu    sync.Mutex
	conns []net.Conn
}

func listenEcho(t *testing.T, run *gateway.Running, addr netip.Addr) *echoServer {
	t.Helper()
	var ln net.Listener
	err := lab.Do(run.Lab.Server.Namespace, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", run.Lab.Server.Namespace, err)
	}
	s := &echoServer{addr: ln.Addr().(*net.TCPAddr).AddrPort(), peers: make(chan netip.AddrPort, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			select {
			case s.peers <- unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()):
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.received.Add(int64(n))
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dial connects from the client namespace. Go's default 15 s keepalive is turned
// off unless d asks for keepalive; the connection is closed at cleanup.
func dial(t *testing.T, run *gateway.Running, to netip.AddrPort, d net.Dialer) (*net.TCPConn, error) {
	t.Helper()
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second
	}
	if d.KeepAlive == 0 {
		d.KeepAlive = -1
	}
	var c net.Conn
	err := lab.Do(run.Lab.Client.Namespace, func() (err error) {
		c, err = d.Dial("tcp", to.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

func mustDial(t *testing.T, run *gateway.Running, to netip.AddrPort, d net.Dialer) *net.TCPConn {
	t.Helper()
	c, err := dial(t, run, to, d)
	if err != nil {
		t.Fatalf("dial %v from %s: %v", to, run.Lab.Client.Namespace, err)
	}
	return c
}

func localAddr(c net.Conn) netip.AddrPort { return unmap(c.LocalAddr().(*net.TCPAddr).AddrPort()) }

// userTimeout sets TCP_USER_TIMEOUT: unacknowledged data older than d kills the
// connection with ETIMEDOUT.
func userTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
		})
		return errors.Join(err, serr)
	}
}

// roundTrip writes msg and reads its echo.
func roundTrip(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write %q: %w", msg, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read echo of %q: %w", msg, err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo of %q came back as %q", msg, buf)
	}
	return nil
}

func mustRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := roundTrip(c, msg); err != nil {
		t.Fatalf("%v -> %v: %v", c.LocalAddr(), c.RemoteAddr(), err)
	}
}

// writeThenRead writes msg and waits up to wait for a read to fail; it returns the
// read's error (nil if the echo came back) and how long after the write it came.
func writeThenRead(c net.Conn, msg string, wait time.Duration) (error, time.Duration) {
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err, time.Since(start)
	}
	c.SetReadDeadline(start.Add(wait))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err, time.Since(start)
}

// entryOf finds the connection the client opened from local.
func entryOf(run *gateway.Running, local netip.AddrPort) (conntrack.EntryInfo, bool) {
	for _, e := range run.Engine.List(run.Gateway.Now(), nil) {
		if e.Orig.SrcAddrPort() == local {
			return e, true
		}
	}
	return conntrack.EntryInfo{}, false
}

// reasonCount is how many packets got a verdict for reason.
func reasonCount(run *gateway.Running, reason policy.Reason) uint64 {
	return run.Engine.Stats().Reasons[reason]
}

func mustEntry(t *testing.T, run *gateway.Running, local netip.AddrPort) conntrack.EntryInfo {
	t.Helper()
	e, ok := entryOf(run, local)
	if !ok {
		t.Fatalf("the gateway tracks no connection from %v", local)
	}
	return e
}

// waitForgotten waits until the gateway no longer tracks the connection from local.
func waitForgotten(t *testing.T, run *gateway.Running, local netip.AddrPort, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, ok := entryOf(run, local); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway still tracks the connection from %v after %v", local, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// api calls the lab's control API over its unix socket and decodes the JSON answer.
func api(t *testing.T, run *gateway.Running, method, path string, body, out any) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", run.Socket)
	}}
	defer tr.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://lab"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// TestE2EDataBothWays: a 1 MiB transfer echoed back byte for byte, over IPv4 and
// IPv6, with the server seeing the client's own address (no NAT).
func TestE2EDataBothWays(t *testing.T) { onBothDevices(t, testE2EDataBothWays) }

func testE2EDataBothWays(t *testing.T) {
	run := startLab(t, policy.Default())
	for _, fam := range []family{ipv4, ipv6} {
		t.Run(fam.name, func(t *testing.T) {
			srv := listenEcho(t, run, fam.server)
			c := mustDial(t, run, srv.addr, net.Dialer{})
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if peer := <-srv.peers; peer != localAddr(c) {
				t.Errorf("server saw the client as %v, want %v", peer, localAddr(c))
			}
			want := make([]byte, 1<<20)
			rand.Read(want)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				werr <- errors.Join(err, c.CloseWrite())
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read the echo: %v (got %d bytes)", err, len(got))
			}
			if err := <-werr; err != nil {
				t.Fatalf("write 1 MiB: %v", err)
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("echo differs from what was sent: got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
			}
			if n := srv.received.Load(); n != int64(len(want)) {
				t.Errorf("server read %d bytes, want %d", n, len(want))
			}
			e := mustEntry(t, run, localAddr(c))
			if e.Orig.DstAddrPort() != srv.addr || e.Reply != e.Orig.Reply() {
				t.Errorf("entry %v / %v; want %v -> %v without NAT", e.Orig, e.Reply, localAddr(c), srv.addr)
			}
			if e.Bytes[conntrack.Original] < 1<<20 || e.Bytes[conntrack.Reply] < 1<<20 {
				t.Errorf("entry counted %v bytes per direction, want at least 1 MiB each way", e.Bytes)
			}
		})
	}
}

// TestE2EIdleOrphanDrop: past the idle timeout with orphan: drop, the next request is
// black-holed and the client gives up with ETIMEDOUT (TCP_USER_TIMEOUT).
func TestE2EIdleOrphanDrop(t *testing.T) { onBothDevices(t, testE2EIdleOrphanDrop) }

func testE2EIdleOrphanDrop(t *testing.T) {
	const timeout = 2 * time.Second
	run := startLab(t, strictPolicy(timeout, policy.OrphanDrop))
	srv := listenEcho(t, run, ipv4.server)
	c := mustDial(t, run, srv.addr, net.Dialer{Control: userTimeout(1500 * time.Millisecond)})
	mustRoundTrip(t, c, "hello")
	if e := mustEntry(t, run, localAddr(c)); e.State != conntrack.TCPEstablished {
		t.Fatalf("entry state %v, want ESTABLISHED", e.State)
	}
	waitForgotten(t, run, localAddr(c), timeout+5*time.Second)

	err, after := writeThenRead(c, "still there?", 10*time.Second)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("after the idle timeout: read error %v after %v, want ETIMEDOUT (the gateway drops the orphan)", err, after)
	}
	if n := srv.received.Load(); n != int64(len("hello")) {
		t.Errorf("server read %d bytes, want only the %d before the idle period", n, len("hello"))
	}
	st := run.Engine.Stats()
	if n := st.Reasons[policy.ReasonOrphan]; n == 0 {
		t.Error("the gateway counted no orphan packet")
	}
	if st.Injected != 0 {
		t.Errorf("the gateway injected %d packets, want none under orphan: drop", st.Injected)
	}
}

// TestE2EIdleOrphanReset: past the idle timeout with orphan: reset, the client sees
// ECONNRESET within 500 ms of writing.
func TestE2EIdleOrphanReset(t *testing.T) { onBothDevices(t, testE2EIdleOrphanReset) }

func testE2EIdleOrphanReset(t *testing.T) {
	for _, fam := range []family{ipv4, ipv6} {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 2 * time.Second
			run := startLab(t, strictPolicy(timeout, policy.OrphanReset))
			srv := listenEcho(t, run, fam.server)
			c := mustDial(t, run, srv.addr, net.Dialer{})
			mustRoundTrip(t, c, "hello")
			mustEntry(t, run, localAddr(c))
			waitForgotten(t, run, localAddr(c), timeout+5*time.Second)

			err, after := writeThenRead(c, "still there?", 5*time.Second)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the idle timeout: read error %v after %v, want ECONNRESET", err, after)
			}
			if after > 500*time.Millisecond {
				t.Errorf("ECONNRESET came %v after the write, want within 500ms", after)
			}
			if n := srv.received.Load(); n != int64(len("hello")) {
				t.Errorf("server read %d bytes, want only the %d before the idle period", n, len("hello"))
			}
			if st := run.Engine.Stats(); st.Injected == 0 || st.VerdictCounts()["reset"] == 0 {
				t.Errorf("injected %d packets, %d reset verdicts; want at least one of each", st.Injected, st.VerdictCounts()["reset"])
			}
		})
	}
}

// TestE2EKeepaliveKeepsConnectionAlive: TCP keepalive below the idle timeout keeps a
// silent connection alive for three times the timeout.
func TestE2EKeepaliveKeepsConnectionAlive(t *testing.T) {
	onBothDevices(t, testE2EKeepaliveKeepsConnectionAlive)
}

func testE2EKeepaliveKeepsConnectionAlive(t *testing.T) {
	const timeout = 2 * time.Second
	run := startLab(t, strictPolicy(timeout, policy.OrphanReset))
	srv := listenEcho(t, run, ipv4.server)
	// TCP_KEEPIDLE and TCP_KEEPINTVL count whole seconds.
	ka := net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 5}
	c := mustDial(t, run, srv.addr, net.Dialer{KeepAliveConfig: ka})
	mustRoundTrip(t, c, "hello")
	local := localAddr(c)
	mustEntry(t, run, local)

	idleFrom := time.Now()
	for time.Since(idleFrom) < 3*timeout {
		if _, ok := entryOf(run, local); !ok {
			t.Fatalf("the gateway forgot the connection %v into the idle period despite keepalive", time.Since(idleFrom))
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustRoundTrip(t, c, "still there?")

	var st control.Stats
	api(t, run, "GET", "/v1/stats", nil, &st)
	if st.Table.KeepaliveProbes == 0 {
		t.Error("the gateway's stats show no keepalive probe")
	}
	if n := st.Table.Destroyed[conntrack.ReasonExpired.String()]; n != 0 {
		t.Errorf("%d connections expired, want none", n)
	}
}

// TestE2EFlushBreaksConnection: POST /v1/flush forgets an established connection;
// under orphan: reset its next write meets a RST.
func TestE2EFlushBreaksConnection(t *testing.T) { onBothDevices(t, testE2EFlushBreaksConnection) }

func testE2EFlushBreaksConnection(t *testing.T) {
	run := startLab(t, strictPolicy(time.Hour, policy.OrphanReset))
	srv := listenEcho(t, run, ipv4.server)
	c := mustDial(t, run, srv.addr, net.Dialer{})
	mustRoundTrip(t, c, "hello")
	mustEntry(t, run, localAddr(c))

	var res map[string]int
	api(t, run, "POST", "/v1/flush", struct{}{}, &res)
	if res["flushed"] < 1 {
		t.Errorf("flush answered %v, want flushed >= 1", res)
	}
	if _, ok := entryOf(run, localAddr(c)); ok {
		t.Fatal("the connection is still tracked after the flush")
	}
	err, after := writeThenRead(c, "still there?", 5*time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the flush: read error %v after %v, want ECONNRESET", err, after)
	}
}

// TestE2ENATRemapsAfterExpiry: under NAT the server sees the outside address; once
// the mapping expires, the next write is picked up with a new outside port, the
// server's kernel knows no such connection and resets it.
func TestE2ENATRemapsAfterExpiry(t *testing.T) { onBothDevices(t, testE2ENATRemapsAfterExpiry) }

func testE2ENATRemapsAfterExpiry(t *testing.T) {
	for _, fam := range []family{ipv4, ipv6} {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 2 * time.Second
			pol := strictPolicy(timeout, policy.OrphanPickup)
			pol.NAT.Enabled = true
			pol.NAT.Outside = []netip.Addr{lab.NATAddr4, lab.NATAddr6}
			run := startLab(t, pol)
			srv := listenEcho(t, run, fam.server)
			c := mustDial(t, run, srv.addr, net.Dialer{})
			local := localAddr(c)
			peer := <-srv.peers
			if peer.Addr() != fam.nat {
				t.Fatalf("server saw the client as %v, want the outside address %v", peer, fam.nat)
			}
			mustRoundTrip(t, c, "hello")
			e := mustEntry(t, run, local)
			if out := e.Reply.DstAddrPort(); out != peer {
				t.Errorf("entry's outside end %v, but the server saw %v", out, peer)
			}
			waitForgotten(t, run, local, timeout+5*time.Second)
			// List hides an expired entry at once; its mapping goes when the sweep
			// destroys the entry (within 100 ms by contract; allow for a loaded machine).
			for deadline := time.Now().Add(time.Second); run.Engine.Stats().NATMaps != 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := run.Engine.Stats().NATMaps; n != 0 {
				t.Errorf("%d NAT mappings left after the connection expired, want 0", n)
			}

			sub := run.Engine.Subscribe(256)
			defer sub.Close()
			err, after := writeThenRead(c, "still there?", 5*time.Second)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the mapping expired: read error %v after %v, want ECONNRESET (the server's RST)", err, after)
			}
			var picked policy.Event
			timer := time.After(2 * time.Second)
			for found := false; !found; {
				select {
				case ev := <-sub.C:
					if ev.Type == conntrack.EventNew && ev.Orig.SrcAddrPort() == local {
						picked, found = ev, true
					}
				case <-timer:
					t.Fatalf("no NEW event for the picked-up connection from %v", local)
				}
			}
			newOut := picked.Reply.DstAddrPort()
			if newOut.Addr() != fam.nat || newOut.Port() == peer.Port() {
				t.Errorf("picked-up connection leaves as %v, want %v with a port other than %d", newOut, fam.nat, peer.Port())
			}
			if n := reasonCount(run, policy.ReasonPickup); n == 0 {
				t.Error("the gateway counted no pickup")
			}
			if n := srv.received.Load(); n != int64(len("hello")) {
				t.Errorf("server read %d bytes, want only the %d before the idle period", n, len("hello"))
			}
		})
	}
}

// TestE2ECapacityEvictsLRU: a table of 8 under evict-lru, 20 connections: the
// victims are exactly the least recently active ones, in order.
func TestE2ECapacityEvictsLRU(t *testing.T) { onBothDevices(t, testE2ECapacityEvictsLRU) }

func testE2ECapacityEvictsLRU(t *testing.T) {
	pol := strictPolicy(time.Hour, policy.OrphanReset)
	pol.Capacity = 8
	pol.OnFull = policy.OnFull(conntrack.EvictLRU)
	run := startLab(t, pol)
	srv := listenEcho(t, run, ipv4.server)
	sub := run.Engine.Subscribe(1024)
	defer sub.Close()

	// settle lets delayed ACKs pass so that activity happens in the order the test says.
	const settle = 150 * time.Millisecond
	var (
		conns   []*net.TCPConn
		lru     []int // the model: indices into conns, least recently active first
		evicted []int // the model's victims, in order
	)
	port := func(i int) uint16 { return localAddr(conns[i]).Port() }
	check := func(step string) {
		t.Helper()
		var want, have []uint16
		for _, i := range lru {
			want = append(want, port(i))
		}
		for _, e := range run.Engine.List(run.Gateway.Now(), nil) {
			have = append(have, e.Orig.SrcPort)
		}
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(have, want) {
			t.Fatalf("after %s: table holds client ports %v, want %v", step, have, want)
		}
	}
	open := func() int {
		conns = append(conns, mustDial(t, run, srv.addr, net.Dialer{}))
		i := len(conns) - 1
		lru = append(lru, i)
		if len(lru) > pol.Capacity {
			evicted = append(evicted, lru[0])
			lru = lru[1:]
		}
		return i
	}
	touch := func(i int) {
		mustRoundTrip(t, conns[i], fmt.Sprintf("touch %d", i))
		lru = append(slices.DeleteFunc(lru, func(j int) bool { return j == i }), i)
		time.Sleep(settle)
	}
	for range 8 {
		touch(open())
	}
	check("opening 8")
	for _, i := range []int{5, 2, 7, 0} {
		touch(i)
	}
	check("touching 5, 2, 7, 0")
	for k := range 12 {
		open()
		time.Sleep(settle)
		check(fmt.Sprintf("opening connection %d", 8+k))
	}

	var gotVictims []uint16
	for len(sub.C) > 0 {
		if ev := <-sub.C; ev.Type == conntrack.EventDestroy && ev.Reason == conntrack.ReasonEvicted {
			gotVictims = append(gotVictims, ev.Orig.SrcPort)
		}
	}
	var wantVictims []uint16
	for _, i := range evicted {
		wantVictims = append(wantVictims, port(i))
	}
	if !slices.Equal(gotVictims, wantVictims) {
		t.Errorf("evicted client ports in order %v, want %v", gotVictims, wantVictims)
	}
	if n := run.Engine.Stats().Table.Destroyed[conntrack.ReasonEvicted]; n != 12 {
		t.Errorf("%d evictions counted, want 12", n)
	}

	// The victims are reset when they speak again; the survivors still work.
	for i, c := range conns {
		err, after := writeThenRead(c, "anyone?", 5*time.Second)
		switch {
		case slices.Contains(evicted, i) && !errors.Is(err, syscall.ECONNRESET):
			t.Errorf("evicted connection %d: read error %v after %v, want ECONNRESET", i, err, after)
		case !slices.Contains(evicted, i) && err != nil:
			t.Errorf("surviving connection %d: %v", i, err)
		}
	}
}

// TestE2EMaxConnsPerSource: the connection over max_conns_per_source is refused with
// a RST, even under orphan: drop; the others keep working.
func TestE2EMaxConnsPerSource(t *testing.T) { onBothDevices(t, testE2EMaxConnsPerSource) }

func testE2EMaxConnsPerSource(t *testing.T) {
	const limit = 3
	pol := strictPolicy(time.Hour, policy.OrphanDrop)
	pol.MaxConnsPerSource = limit
	run := startLab(t, pol)
	srv := listenEcho(t, run, ipv4.server)
	var conns []*net.TCPConn
	for i := range limit {
		c := mustDial(t, run, srv.addr, net.Dialer{})
		mustRoundTrip(t, c, fmt.Sprintf("conn %d", i))
		conns = append(conns, c)
	}
	start := time.Now()
	c, err := dial(t, run, srv.addr, net.Dialer{Timeout: 5 * time.Second})
	if err == nil {
		t.Fatalf("connection %d over the limit of %d was accepted (%v)", limit+1, limit, localAddr(c))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection over the limit: %v after %v, want a refusal by RST (ECONNREFUSED or ECONNRESET)", err, time.Since(start))
	}
	if n := len(srv.peers); n != limit {
		t.Errorf("server accepted %d connections, want %d", n, limit)
	}
	if n := reasonCount(run, policy.ReasonSourceLimit); n == 0 {
		t.Error("the gateway counted no source-limit refusal")
	}
	for i, c := range conns {
		mustRoundTrip(t, c, fmt.Sprintf("conn %d again", i))
	}
}

// TestE2EPcapShowsInjectedReset: the run's pcapng opens with gopacket and shows the
// RST the gateway injected toward the client, with its comment.
func TestE2EPcapShowsInjectedReset(t *testing.T) { onBothDevices(t, testE2EPcapShowsInjectedReset) }

func testE2EPcapShowsInjectedReset(t *testing.T) {
	run := startLab(t, strictPolicy(time.Hour, policy.OrphanReset))
	path := run.Gateway.PcapPath()
	if path == "" {
		t.Fatal("the lab records no pcap although LabOptions.Pcap was set")
	}
	srv := listenEcho(t, run, ipv4.server)
	c := mustDial(t, run, srv.addr, net.Dialer{})
	mustRoundTrip(t, c, "hello")
	if n := run.Engine.Flush(run.Gateway.Now()); n < 1 {
		t.Fatalf("Engine.Flush forgot %d connections, want at least 1", n)
	}
	if err, after := writeThenRead(c, "still there?", 5*time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the flush: read error %v after %v, want ECONNRESET", err, after)
	}
	var res control.PcapAnswer
	api(t, run, "POST", "/v1/pcap", map[string]string{"path": ""}, &res) // stops and closes the file
	if res.Ended == nil || res.Ended.Path != path || res.Ended.Packets == 0 || res.Ended.Error != "" {
		t.Errorf("POST /v1/pcap to stop answered %+v, want the recording of %s with its packets", res, path)
	}
	if p := run.Gateway.PcapPath(); p != "" {
		t.Fatalf("still recording to %s after POST /v1/pcap with an empty path", p)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("open %s with pcapgo: %v", path, err)
	}
	local := localAddr(c)
	var packets int
	var comments []string
	found := false
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read packet %d of %s: %v", packets+1, path, err)
		}
		packets++
		comment := strings.Join(opts.Comments, "; ")
		comments = append(comments, comment)
		if !strings.HasPrefix(comment, "injected") {
			continue
		}
		p := gopacket.NewPacket(data, layers.LinkTypeRaw, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if tcp == nil || ip == nil || !tcp.RST {
			t.Errorf("injected packet %d (%q) is not an IPv4 TCP RST: %v", packets, comment, p)
			continue
		}
		dst := netip.AddrPortFrom(netip.MustParseAddr(ip.DstIP.String()), uint16(tcp.DstPort))
		src := netip.AddrPortFrom(netip.MustParseAddr(ip.SrcIP.String()), uint16(tcp.SrcPort))
		if dst == local && src == srv.addr && ci.InterfaceIndex == int(policy.Inside) {
			found = true
		}
	}
	if !found {
		t.Errorf("no injected RST %v -> %v on the inside interface among %d packets; comments: %q", srv.addr, local, packets, comments)
	}
}
