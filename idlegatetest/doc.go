// Package idlegatetest runs idlegate inside Go tests: it puts a middlebox that
// forgets idle connections on purpose (an AWS NAT gateway, an Azure load balancer, a
// full home router) between a client and a server network namespace, in the test's
// own process, so that a test can prove that its connection pool survives the box,
// or show how it dies.
//
//	 ClientNamespace()               this test's process            ServerNamespace()
//	+-------------------------+     +------------------------+     +-------------------------+
//	| 198.18.0.2 (ClientAddr) |     | idlegate gateway:      |     | 198.19.0.2 (ServerAddr) |
//	| Dial, DialWith,         |<===>| the policy, the table, |<===>| Listen, ListenWith,     |
//	| InClient                | TUN | Events, Table, Pcap,   | TUN | ListenPacket,           |
//	|                         |     | Expire, Flush          |     | InServer                |
//	+-------------------------+     +------------------------+     +-------------------------+
//
// New builds the lab and removes it when the test ends:
//
//	import (
//		"context"
//		"errors"
//		"io"
//		"net"
//		"net/netip"
//		"syscall"
//		"testing"
//		"time"
//
//		"github.com/idlegate/idlegate/idlegatetest"
//	)
//
//	func TestPoolSurvivesNATGateway(t *testing.T) {
//		lab := idlegatetest.New(t, idlegatetest.Profile("aws-nat-gateway"),
//			idlegatetest.TimeScale(0.01), idlegatetest.Set("orphan", "reset"))
//
//		// An echo server in the server namespace.
//		ln, err := lab.Listen("tcp", ":7000")
//		if err != nil {
//			t.Fatal(err)
//		}
//		go func() {
//			for {
//				c, err := ln.Accept()
//				if err != nil {
//					return
//				}
//				go io.Copy(c, c)
//			}
//		}()
//		addr := netip.AddrPortFrom(lab.ServerAddr(), 7000).String()
//		ping := func(c net.Conn) error {
//			c.SetDeadline(time.Now().Add(2 * time.Second))
//			if _, err := c.Write([]byte("ping")); err != nil {
//				return err
//			}
//			_, err := io.ReadFull(c, make([]byte, 4))
//			return err
//		}
//
//		// One connection without keepalive, one with the keepalive `idlegate advise`
//		// computes for this box: probes well inside its 350 s, here 3.5 s.
//		bare, err := lab.Dial("tcp", addr)
//		if err != nil {
//			t.Fatal(err)
//		}
//		ka := lab.Advice().Keepalive
//		probing := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
//			Enable: true, Idle: ka.Idle, Interval: ka.Interval, Count: ka.Count}}
//		kept, err := lab.DialWith(context.Background(), probing, "tcp", addr)
//		if err != nil {
//			t.Fatal(err)
//		}
//		for _, c := range []net.Conn{bare, kept} {
//			if err := ping(c); err != nil {
//				t.Fatal(err)
//			}
//		}
//
//		time.Sleep(lab.Advice().Timeout * 3 / 2) // idle past the box's timeout
//
//		if err := ping(bare); !errors.Is(err, syscall.ECONNRESET) {
//			t.Errorf("without keepalive: %v, want the gateway's RST (ECONNRESET)", err)
//		}
//		if err := ping(kept); err != nil {
//			t.Errorf("with keepalive: %v, want the echo", err)
//		}
//	}
//
// A lab needs root (network namespaces and TUN devices) and Linux: `go test -exec
// sudo ./...` runs a package's tests as root. Without root, New skips the test with
// a message saying so; when the environment variable CI is "true" (GitHub Actions,
// GitLab CI) it fails it instead, so that a pipeline never passes a test that did not
// run. Start and Close do the same outside a test (TestMain, examples, programs).
//
// # Time scale and keepalive
//
// TimeScale shrinks the box's timeouts so that a test takes seconds: 350 s becomes
// 3.5 s at 0.01. Keepalive settings do not shrink with them: take them from
// Lab.Advice, which applies `idlegate advise`'s rule to the scaled timeout (and
// reports the production values in Advice.RealKeepalive). For the same reason Dial
// and Listen make sockets with TCP keepalive off: Go's net.Dial and net.Listen turn
// it on with a 15 s idle time, which keeps a connection alive through any box whose
// timeout is longer than that and hides the failure the test is looking for. DialWith and ListenWith
// take the net.Dialer and net.ListenConfig the code under test really uses.
//
// # Sockets and namespaces
//
// A socket belongs to the network namespace it was created in, whatever goroutine
// uses it later. Dial, DialWith and InClient create sockets in the client namespace;
// Listen, ListenWith, ListenPacket and InServer in the server's. Real programs (a
// database server, redis-server) run in the lab with `ip netns exec` and the
// namespace names (ClientNamespace, ServerNamespace). Several labs run side by side,
// in one test binary or many: every lab's name is unique.
//
// # Between your own namespaces and containers: Wedge
//
// When the code under test already runs somewhere (two containers started by
// testcontainers or docker compose, two namespaces the test made), Wedge puts the
// same gateway between them instead of building a lab, and takes it out when the
// test ends, leaving both sides' links, addresses and routes as they were:
//
//	w := idlegatetest.Wedge(t, "docker:app", "docker:db",
//		idlegatetest.Profile("azure-lb"), idlegatetest.TimeScale(0.02))
//	w.Expire(control.Filter{DPort: 5432}) // the box forgets the pool's connections
//
// Sides are written as `idlegate wedge` takes them (netns:NAME, pid:PID, path:FILE,
// docker:NAME, podman:NAME, ip:ADDR). Connections open before the wedge are
// adopted; Dial and InClient run in the first side, Listen and InServer in the
// second, and the gateway's methods work as on a lab. A NAT profile needs NATAddr.
//
// # Stability
//
// This package is API: its exported names keep their meaning across releases, and
// a change that breaks a caller is announced in the release notes. So are the
// types it hands out, from packages policy (Policy, Event, Advice, Stats), control
// (Filter) and conntrack (Key, EntryInfo, Event and their enumerations). The README's
// "Stability" section lists every package that is API and what is not.
package idlegatetest
