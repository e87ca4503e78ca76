package bench

// The kernel reference topology end to end (drawn in kernel.go):
//
//	bench-tNNNN-client  --veth-->  bench-tNNNN-router (nft conntrack)  --veth-->  bench-tNNNN-server
//	UDP dialer 198.18.0.2                                                  UDP echo 198.19.0.2:9999
//
// The test sends a few datagrams client -> server, checks each reply comes back,
// that the router tracked the flow, and that Down leaves no namespace behind.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/idlegate/idlegate/lab"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root and CI runs as root; a skip would hide it")
	}
	t.Skip("needs root")
}

func TestKernelTopologyForwards(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nft is missing: deps.sh installs nftables")
		}
		t.Skip("nft is missing: run bash deps.sh")
	}
	prefix := fmt.Sprintf("bench-t%d", os.Getpid()%100000)
	k, err := UpKernel(KernelConfig{Prefix: prefix, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			k.Down()
		}
	})

	server := netip.AddrPortFrom(lab.ServerAddr4, 9999)
	var srv *net.UDPConn
	if err := lab.Do(k.Server, func() (err error) {
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(server))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from.Addr() != lab.ClientAddr4 {
				buf = append(buf[:0], "wrong source "+from.String()...)
				n = len(buf)
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()

	var cl *net.UDPConn
	if err := lab.Do(k.Client, func() (err error) {
		cl, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(server))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf := make([]byte, 2048)
	for i := range 5 {
		msg := fmt.Sprintf("ping %d", i)
		if _, err := cl.Write([]byte(msg)); err != nil {
			t.Fatalf("send %q: %v", msg, err)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := cl.Read(buf)
		if err != nil {
			t.Fatalf("reply to %q: %v", msg, err)
		}
		if got := string(buf[:n]); got != msg {
			t.Fatalf("reply to %q: got %q", msg, got)
		}
	}

	read, f, err := k.ConntrackCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := read(); err != nil || n < 1 {
		t.Fatalf("router nf_conntrack_count = %d, %v; want the UDP flow tracked", n, err)
	}
	if err := k.FlushConntrack(); err != nil {
		t.Fatal(err)
	}
	if n, err := read(); err != nil || n != 0 {
		t.Fatalf("nf_conntrack_count after flush = %d, %v; want 0", n, err)
	}

	cl.Close()
	srv.Close()
	f.Close()
	downed = true
	if err := k.Down(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range KernelNamespaces(prefix) {
		if lab.NamespaceExists(ns) {
			t.Errorf("namespace %s is still there after Down", ns)
		}
	}
}
