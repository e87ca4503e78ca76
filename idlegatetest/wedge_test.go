package idlegatetest_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/idlegatetest"
	"github.com/idlegate/idlegate/lab"
)

// wedgePair makes two namespaces joined by a veth pair, as two containers on one
// network are, and removes them when the test ends:
//
//	NAME-a: eth0 198.18.7.2/24 fd00:7::2/64 <-veth-> NAME-b: eth0 198.18.7.3/24 fd00:7::3/64
func wedgePair(t *testing.T) (a, b string) {
	t.Helper()
	base := fmt.Sprintf("igw%d", os.Getpid())
	a, b = base+"-a", base+"-b"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{a, b} {
			exec.Command("ip", "netns", "delete", ns).Run()
		}
	})
	ip("netns", "add", a)
	ip("netns", "add", b)
	ip("-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	for ns, n := range map[string]string{a: "2", b: "3"} {
		ip("-n", ns, "link", "set", "lo", "up")
		ip("-n", ns, "link", "set", "eth0", "up")
		ip("-n", ns, "addr", "add", "198.18.7."+n+"/24", "dev", "eth0")
		ip("-n", ns, "addr", "add", "fd00:7::"+n+"/64", "dev", "eth0", "nodad")
	}
	return a, b
}

// netState is what a wedge must leave as it found it in namespace ns: its links,
// addresses and routes (both families, every table).
func netState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"-br", "link"}, {"-br", "addr"}, {"-4", "route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
		}
		fmt.Fprintf(&b, "# ip %s\n%s", strings.Join(args, " "), out)
	}
	return b.String()
}

func TestWedge(t *testing.T) {
	needRoot(t)
	a, b := wedgePair(t)
	before := map[string]string{a: netState(t, a), b: netState(t, b)}

	// A connection open before the wedge goes in, which the wedge must adopt.
	nsA, err := lab.OpenNetns(a)
	if err != nil {
		t.Fatal(err)
	}
	defer nsA.Close()
	nsB, err := lab.OpenNetns(b)
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	var ln net.Listener
	if err := nsB.Run(func() (err error) { ln, err = net.Listen("tcp", ":7100"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	var pre net.Conn
	if err := nsA.Run(func() (err error) {
		pre, err = (&net.Dialer{KeepAlive: -1}).Dial("tcp", "198.18.7.3:7100")
		return
	}); err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	if err := echo(pre); err != nil {
		t.Fatalf("before the wedge: %v", err)
	}

	w := idlegatetest.Wedge(t, "netns:"+a, "netns:"+b, idlegatetest.Set("orphan", "reset"))
	if got, want := w.ClientAddr(), netip.MustParseAddr("198.18.7.2"); got != want {
		t.Errorf("ClientAddr = %s, want %s", got, want)
	}
	if got, want := w.ServerAddr(), netip.MustParseAddr("198.18.7.3"); got != want {
		t.Errorf("ServerAddr = %s, want %s", got, want)
	}
	if got, want := w.ServerAddr6(), netip.MustParseAddr("fd00:7::3"); got != want {
		t.Errorf("ServerAddr6 = %s, want %s", got, want)
	}
	if w.ClientNamespace() != a || w.ServerNamespace() != b {
		t.Errorf("namespaces %s, %s; want %s, %s", w.ClientNamespace(), w.ServerNamespace(), a, b)
	}
	if during := netState(t, a); during == before[a] {
		t.Fatalf("the wedge changed nothing in %s: traffic does not cross it\n%s", a, during)
	}

	// The adopted connection goes on, now through the gateway.
	if err := echo(pre); err != nil {
		t.Fatalf("the connection open before the wedge: %v", err)
	}
	if len(entriesTo(w, 7100)) != 1 {
		t.Fatalf("the adopted connection has no entry: %v", w.Table())
	}

	// A new connection, both families, and what the box does when it forgets one.
	for _, addr := range []string{"198.18.7.3:7100", "[fd00:7::3]:7100"} {
		c, err := w.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s through the wedge: %v", addr, err)
		}
		if err := echo(c); err != nil {
			t.Fatalf("%s through the wedge: %v", addr, err)
		}
		port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
		if n := w.Expire(control.Filter{SPort: port}); n != 1 {
			t.Fatalf("Expire picked %d connections from port %d, want 1", n, port)
		}
		if err := echo(c); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s after the box forgot it (orphan: reset): %v, want a reset", addr, err)
		}
		c.Close()
	}

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{a, b} {
		if after := netState(t, ns); after != before[ns] {
			t.Errorf("%s after the wedge is not as before:\n--- before\n%s--- after\n%s", ns, before[ns], after)
		}
	}
	// Out of the path again, the adopted connection goes on directly.
	if err := echo(pre); err != nil {
		t.Fatalf("after the wedge: %v", err)
	}
}

func TestWedgeRefuses(t *testing.T) {
	if _, err := idlegatetest.StartWedge("netns:x", "netns:y", idlegatetest.Profile("aws-nat-gateway")); err == nil || !strings.Contains(err.Error(), "NATAddr") {
		t.Errorf("a NAT profile without NATAddr: %v, want an error naming NATAddr", err)
	}
	if _, err := idlegatetest.StartWedge("nope", "netns:y"); err == nil || !strings.Contains(err.Error(), "side A") {
		t.Errorf("a bad target: %v, want an error naming side A", err)
	}
	if _, err := idlegatetest.Start(idlegatetest.NATAddr(netip.MustParseAddr("198.19.0.9"))); err == nil || !strings.Contains(err.Error(), "for a wedge") {
		t.Errorf("NATAddr on a lab: %v, want it refused", err)
	}
	if _, err := idlegatetest.StartWedge("netns:x", "netns:y", idlegatetest.NATAddr(netip.MustParseAddr("198.19.0.9")), idlegatetest.NATAddr(netip.MustParseAddr("198.19.0.8"))); err == nil || !strings.Contains(err.Error(), "one NAT address per IP family") {
		t.Errorf("two IPv4 NAT addresses: %v", err)
	}
}

func TestWedgeSameNamespace(t *testing.T) {
	needRoot(t)
	a, _ := wedgePair(t)
	_, err := idlegatetest.StartWedge("netns:"+a, "netns:"+a)
	if !errors.Is(err, lab.ErrSameNamespace) {
		t.Fatalf("one namespace twice: %v, want lab.ErrSameNamespace", err)
	}
}
