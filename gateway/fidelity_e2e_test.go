package gateway_test

// End-to-end tests of issue 15 where the kernel's reaction matters, in a lab of their
// own each (topology in e2e_test.go): the gateway as a router hop for real sockets
// (traceroute: a TTL-1 probe gets time exceeded from the gateway; a TTL-2 one arrives
// with 1), a closed port's RST deleting the entry at once, and a FIN after the idle
// expiry that Linux (invalid: accept) lets through to the server's socket.

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// udpWithTTL sends one datagram from the client namespace to to with the IPv4 TTL or
// IPv6 hop limit ttl, from a socket that stays open (its port is returned) until the
// test ends.
func udpWithTTL(t *testing.T, ns string, to netip.AddrPort, ttl int) netip.AddrPort {
	t.Helper()
	var c *net.UDPConn
	if err := lab.Do(ns, func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, _ := c.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) {
		if to.Addr().Is4() {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if _, err := c.Write([]byte("probe")); err != nil {
		t.Fatal(err)
	}
	return unmap(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// TestE2ETraceroute: a probe with TTL 1 is answered with ICMP time exceeded from the
// gateway's inside address, quoting the probe; a probe with TTL 2 reaches the server
// with TTL 1. IPv4 and IPv6, both devices.
func TestE2ETraceroute(t *testing.T) { onBothDevices(t, testE2ETraceroute) }

func testE2ETraceroute(t *testing.T) {
	run := startLab(t, policy.Default())
	for _, f := range []struct {
		family
		hop          netip.Addr
		icmpNet      string
		timeExceeded byte
	}{
		{ipv4, lab.RouterAddr4, "ip4:icmp", 11},
		{ipv6, lab.RouterAddr6, "ip6:ipv6-icmp", 3},
	} {
		t.Run(f.name, func(t *testing.T) {
			// The server reads the hop limit each datagram arrives with.
			var srv *net.UDPConn
			if err := lab.Do(run.Lab.Server.Namespace, func() (err error) {
				srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.server, 0)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			rc, _ := srv.SyscallConn()
			rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
				unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
			})
			to := unmap(srv.LocalAddr().(*net.UDPAddr).AddrPort())

			var icmp net.PacketConn
			if err := lab.Do(run.Lab.Client.Namespace, func() (err error) {
				icmp, err = net.ListenPacket(f.icmpNet, f.client.String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer icmp.Close()

			// Hop 1: the gateway.
			probe := udpWithTTL(t, run.Lab.Client.Namespace, to, 1)
			icmp.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, from, err := icmp.ReadFrom(buf)
				if err != nil {
					t.Fatalf("no time exceeded for a TTL-1 probe from %v: %v", probe, err)
				}
				if n < 8 || buf[0] != f.timeExceeded {
					continue
				}
				if got := netip.MustParseAddr(from.String()); got != f.hop {
					t.Fatalf("time exceeded from %v, want the gateway's %v", got, f.hop)
				}
				// The quote ends with the probe's UDP header: its source port.
				if !quotesPort(buf[8:n], probe.Port()) {
					t.Fatalf("time exceeded does not quote the probe from port %d: % x", probe.Port(), buf[:n])
				}
				break
			}
			srv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := srv.ReadFromUDPAddrPort(buf); err == nil {
				t.Fatal("the TTL-1 probe reached the server")
			}

			// Hop 2: the server, the TTL one lower than sent.
			udpWithTTL(t, run.Lab.Client.Namespace, to, 2)
			oob := make([]byte, 128)
			srv.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, oobn, _, _, err := srv.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				t.Fatalf("the TTL-2 probe did not arrive: %v", err)
			}
			if ttl, ok := arrivalTTL(oob[:oobn]); !ok || ttl != 1 {
				t.Fatalf("the probe arrived with TTL %d (%v), want 1", ttl, ok)
			}
		})
	}
}

// quotesPort reports whether the ICMP body (quoted IP header, then UDP) names port as
// the quoted UDP source port.
func quotesPort(body []byte, port uint16) bool {
	if len(body) < 1 {
		return false
	}
	hl := 40
	if body[0]>>4 == 4 {
		hl = int(body[0]&0x0f) * 4
	}
	return len(body) >= hl+2 && uint16(body[hl])<<8|uint16(body[hl+1]) == port
}

// arrivalTTL reads IP_TTL or IPV6_HOPLIMIT from a datagram's control messages.
func arrivalTTL(oob []byte) (int, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL ||
			m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT) && len(m.Data) >= 1 {
			return int(m.Data[0]), true
		}
	}
	return 0, false
}

// TestE2EClosedPortLeavesNoEntry: the server's kernel answers a SYN to a closed port
// with an RST; as in Linux, that RST deletes the entry at once instead of leaving it
// in CLOSE for 10 s.
func TestE2EClosedPortLeavesNoEntry(t *testing.T) { onBothDevices(t, testE2EClosedPortLeavesNoEntry) }

func testE2EClosedPortLeavesNoEntry(t *testing.T) {
	run := startLab(t, policy.Default())
	sub := run.Engine.Subscribe(64)
	defer sub.Close()
	_, err := dial(t, run, netip.AddrPortFrom(ipv4.server, 9), net.Dialer{})
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("dial a closed port: %v, want ECONNREFUSED", err)
	}
	for _, e := range run.Engine.List(run.Gateway.Now(), nil) {
		if e.Orig.DstPort == 9 {
			t.Fatalf("the refused connection is still listed: %v %v", e.Orig, e.State)
		}
	}
	var got []string
	timeout := time.After(2 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-sub.C:
			if ev.Orig.DstPort == 9 {
				s := ev.Type.String()
				if ev.Type == conntrack.EventDestroy {
					s += " " + ev.Reason.String()
				}
				got = append(got, s)
			}
		case <-timeout:
			t.Fatalf("events for the refused connection: %v, want NEW then DESTROY closed", got)
		}
	}
	if got[0] != "NEW" || got[1] != "DESTROY closed" {
		t.Fatalf("events %v, want NEW then DESTROY closed", got)
	}
}

// TestE2EFINAfterExpiryReachesServer: behind Linux with no INVALID rule (the
// linux-conntrack profile), a FIN sent after the connection's entry expired is
// invalid and passes untracked: the server's socket sees the close. With
// invalid: drop it never arrives.
func TestE2EFINAfterExpiryReachesServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		invalid string
		arrives bool
	}{{"accept", true}, {"drop", false}} {
		t.Run(tc.invalid, func(t *testing.T) {
			t.Parallel()
			p, err := policy.ProfilePolicy("linux-conntrack")
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range [][2]string{{"timeouts.tcp.established", "1s"}, {"invalid", tc.invalid}} {
				if err := p.Set(kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
			run := startLab(t, p)
			eof := make(chan error, 1)
			var ln net.Listener
			if err := lab.Do(run.Lab.Server.Namespace, func() (err error) {
				ln, err = net.Listen("tcp", netip.AddrPortFrom(ipv4.server, 0).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					eof <- err
					return
				}
				defer c.Close()
				buf := make([]byte, 16)
				c.SetReadDeadline(time.Now().Add(8 * time.Second))
				for {
					if _, err := c.Read(buf); err != nil {
						eof <- err
						return
					}
				}
			}()
			c := mustDial(t, run, unmap(ln.Addr().(*net.TCPAddr).AddrPort()), net.Dialer{})
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			waitForgotten(t, run, localAddr(c), 4*time.Second)
			c.CloseWrite() // the FIN, on a connection the gateway no longer knows
			select {
			case err := <-eof:
				switch {
				case tc.arrives && err != io.EOF:
					t.Fatalf("the server read %v, want EOF: the FIN should have passed untracked", err)
				case !tc.arrives && err == io.EOF:
					t.Fatal("the server saw the FIN, which invalid: drop should have dropped")
				case !tc.arrives && !errors.Is(err, os.ErrDeadlineExceeded):
					t.Fatalf("the server read %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server's read never returned")
			}
		})
	}
}
