package idlegatetest_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/idlegatetest"
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
	t.Skip("needs root for network namespaces; run as root (go test -exec sudo) or in CI")
}

// echoServer serves an echo on port in lab's server namespace.
func echoServer(t *testing.T, l *idlegatetest.Lab, port uint16) string {
	t.Helper()
	ln, err := l.Listen("tcp", ":"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return netip.AddrPortFrom(l.ServerAddr(), port).String()
}

// echo writes a word and reads it back within 2 s.
func echo(c net.Conn) error {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		return errors.New("echo came back as " + string(b))
	}
	return nil
}

func entriesTo(l *idlegatetest.Lab, port uint16) []conntrack.EntryInfo {
	var out []conntrack.EntryInfo
	for _, e := range l.Table() {
		if e.Orig.DstPort == port {
			out = append(out, e)
		}
	}
	return out
}

// TestLab drives one lab through every verb: the sockets it makes are in the right
// namespaces, the table and events see their connections, Expire and Flush end them
// (the next packet meets the orphan rule), SetPolicy changes the running box or
// refuses and changes nothing, and Close removes everything.
//
//	client netns (198.18.0.2) --- gateway (this process) --- server netns (198.19.0.2)
//	 Dial/DialWith -> :7000, :7001                            Listen :7000, :7001
func TestLab(t *testing.T) {
	needRoot(t)
	l := idlegatetest.New(t, idlegatetest.Set("orphan", "reset"), idlegatetest.Set("timeouts.tcp.established", "1h"))
	name := l.Name()
	if !lab.NamespaceExists(l.ClientNamespace()) || !lab.NamespaceExists(l.ServerNamespace()) {
		t.Fatalf("namespaces %s and %s: want both to exist", l.ClientNamespace(), l.ServerNamespace())
	}
	a7000, a7001 := echoServer(t, l, 7000), echoServer(t, l, 7001)

	t.Run("namespaces", func(t *testing.T) {
		for _, tc := range []struct {
			side string
			in   func(func() error) error
			addr netip.Addr
		}{{"client", l.InClient, l.ClientAddr()}, {"server", l.InServer, l.ServerAddr()}} {
			var addrs []net.Addr
			if err := tc.in(func() (err error) {
				ifc, err := net.InterfaceByName(lab.LinkName)
				if err == nil {
					addrs, err = ifc.Addrs()
				}
				return err
			}); err != nil {
				t.Fatalf("%s: %v", tc.side, err)
			}
			found := false
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == tc.addr {
					found = true
				}
			}
			if !found {
				t.Errorf("%s namespace's %s has %v, want %s", tc.side, lab.LinkName, addrs, tc.addr)
			}
		}
	})

	c1, err := l.Dial("tcp", a7000)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := l.DialWith(t.Context(), &net.Dialer{Timeout: time.Second}, "tcp", a7001)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{c1, c2} {
		if err := echo(c); err != nil {
			t.Fatal(err)
		}
		if got := netip.MustParseAddrPort(c.LocalAddr().String()).Addr(); got != l.ClientAddr() {
			t.Errorf("connection from %s, want from the client namespace's %s", got, l.ClientAddr())
		}
	}
	for _, port := range []uint16{7000, 7001} {
		es := entriesTo(l, port)
		if len(es) != 1 || es[0].State != conntrack.TCPEstablished || es[0].Timeout != time.Hour {
			t.Fatalf("table entries to port %d: %+v, want one ESTABLISHED with timeout 1h", port, es)
		}
	}
	news := 0
	for _, ev := range l.Events() {
		if ev.Type == conntrack.EventNew {
			news++
		}
	}
	if news != 2 {
		t.Errorf("%d NEW events, want 2 (one per connection)", news)
	}

	t.Run("expire", func(t *testing.T) {
		n := l.Expire(control.Filter{DPort: 7000})
		if n != 1 {
			t.Fatalf("Expire picked %d connections, want 1", n)
		}
		var destroyed []policy.Event
		for _, ev := range l.Events() {
			if ev.Type == conntrack.EventDestroy {
				destroyed = append(destroyed, ev)
			}
		}
		if len(destroyed) != 1 || destroyed[0].Orig.DstPort != 7000 || destroyed[0].Reason != conntrack.ReasonExpired {
			t.Fatalf("DESTROY events when Expire returned: %v, want one for port 7000, reason expired", destroyed)
		}
		if es := entriesTo(l, 7000); len(es) != 0 {
			t.Errorf("after Expire the table still has %v", es)
		}
		if err := echo(c1); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("echo after Expire: %v, want ECONNRESET (orphan: reset)", err)
		}
		if err := echo(c2); err != nil {
			t.Errorf("the other connection: %v, want it untouched", err)
		}
		if n := l.Expire(control.Filter{DPort: 9}); n != 0 {
			t.Errorf("Expire of nothing: %d", n)
		}
	})

	t.Run("set policy", func(t *testing.T) {
		if err := l.SetPolicy(idlegatetest.Set("timeouts.tcp.established", "90s")); err != nil {
			t.Fatal(err)
		}
		if got := time.Duration(l.Policy().Timeouts.TCP.Established); got != 90*time.Second || l.Policy().Orphan.String() != "reset" {
			t.Errorf("Policy(): established %v orphan %s, want 90s and the orphan rule kept", got, l.Policy().Orphan)
		}
		if es := entriesTo(l, 7001); len(es) != 1 || es[0].Timeout != 90*time.Second {
			t.Errorf("entry after SetPolicy: %+v, want the new timeout 90s at once", es)
		}
		if err := echo(c2); err != nil {
			t.Fatal(err)
		}
		if a := l.Advice(); a.Timeout != 90*time.Second || a.Keepalive.Idle != 45*time.Second {
			t.Errorf("Advice: timeout %v, keepalive %v; want 90s and idle 45s", a.Timeout, a.Keepalive)
		}
		before := l.Policy()
		for _, tc := range []struct {
			opts []idlegatetest.Option
			err  string
		}{
			{[]idlegatetest.Option{idlegatetest.Set("orphan", "drop"), idlegatetest.Set("capacity", "10")}, "capacity cannot change while the gateway runs"},
			{[]idlegatetest.Option{idlegatetest.Set("orphan", "drop"), idlegatetest.TimeScale(0.5)}, "SetPolicy takes Set options only"},
			{[]idlegatetest.Option{idlegatetest.Profile("aws-alb")}, "SetPolicy takes Set options only"},
			{[]idlegatetest.Option{idlegatetest.Set("orphan", "drop"), idlegatetest.Set("timeouts.tcp.established", "soon")}, `Set("timeouts.tcp.established", "soon")`},
		} {
			if err := l.SetPolicy(tc.opts...); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SetPolicy: %v, want a refusal saying %q", err, tc.err)
			}
		}
		// The engine's orphan rule is checked by the flush below (a RST).
		if l.Policy().Orphan != before.Orphan || l.TimeScale() != 1 {
			t.Errorf("a refused SetPolicy changed the policy: orphan %s, scale %g", l.Policy().Orphan, l.TimeScale())
		}
		if es := entriesTo(l, 7001); len(es) != 1 || es[0].Timeout != 90*time.Second {
			t.Errorf("entry after refused changes: %+v, want the timeout still 90s", es)
		}
	})

	t.Run("pcap", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "lab.pcapng")
		if err := l.Pcap(path); err != nil {
			t.Fatal(err)
		}
		if err := echo(c2); err != nil {
			t.Fatal(err)
		}
		if err := l.Pcap(""); err != nil {
			t.Fatal(err)
		}
		if err := l.Pcap(path); err == nil {
			t.Error("Pcap over an existing file: no error, want a refusal")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := capture.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var per [2]int
		var rec capture.Record
		for rd.Next(&rec) == nil {
			if rec.Interface < len(per) {
				per[rec.Interface]++
			}
		}
		if !rd.Idlegate() || per[0] == 0 || per[1] == 0 {
			t.Errorf("the recording: idlegate's %v, %v packets on the inside and the outside; want idlegate's with the echo each way", rd.Idlegate(), per)
		}
	})

	t.Run("flush", func(t *testing.T) {
		if n := l.Flush(); n < 1 {
			t.Fatalf("Flush forgot %d connections, want the live one", n)
		}
		flushed := 0
		for _, ev := range l.Events() {
			if ev.Type == conntrack.EventDestroy && ev.Reason == conntrack.ReasonFlushed {
				flushed++
			}
		}
		if flushed < 1 || len(l.Table()) != 0 {
			t.Errorf("after Flush: %d DESTROY flushed events, table %v", flushed, l.Table())
		}
		if err := echo(c2); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("echo after Flush: %v, want ECONNRESET", err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		if _, err := l.Dial("tcp", "localhost:7000"); err == nil || !strings.Contains(err.Error(), "give an IP address") {
			t.Errorf("Dial of a host name: %v", err)
		}
		if _, err := l.Listen("tcp", ":7000"); err == nil {
			t.Error("a second Listen on :7000: no error")
		}
	})

	// Close now, before the cleanup: everything is gone, and the cleanup's second
	// Close is harmless.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if lab.NamespaceExists(lab.ClientNamespace(name)) || lab.NamespaceExists(lab.ServerNamespace(name)) {
		t.Errorf("namespaces of %s still there after Close", name)
	}
	if _, err := os.Stat(lab.RunDir(name, "")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run directory of %s: %v, want it removed", name, err)
	}
	if _, err := l.Dial("tcp", a7000); err == nil {
		t.Error("Dial after Close: no error")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestLabsSideBySide: two labs at once get names of their own and do not see each
// other's connections.
func TestLabsSideBySide(t *testing.T) {
	needRoot(t)
	a, b := idlegatetest.New(t), idlegatetest.New(t, idlegatetest.Profile("home-router"))
	if a.Name() == b.Name() {
		t.Fatalf("both labs are named %s", a.Name())
	}
	addr := echoServer(t, a, 7000)
	echoServer(t, b, 7000)
	c, err := a.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	if len(entriesTo(a, 7000)) != 1 || len(b.Table()) != 0 {
		t.Errorf("lab a has %v, lab b %v; want the connection in a only", a.Table(), b.Table())
	}
}

// childEnv runs TestNewChild in a child process.
const childEnv = "IDLEGATETEST_CHILD"

// TestNewChild is the test the child process runs: New must not return on a machine
// that cannot run a lab.
func TestNewChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestNewWithoutRoot in a child process")
	}
	idlegatetest.New(t)
	t.Fatal("New returned on a machine that cannot run a lab")
}

// TestNewWithoutRoot runs a test that calls New as a user who is not root: it skips
// with a message naming the fix, and with CI=true it fails instead.
func TestNewWithoutRoot(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// As nobody, from a copy of the test binary in a directory nobody can
		// reach (t.TempDir's parent is root's alone).
		dir, err := os.MkdirTemp("", "idlegatetest-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "idlegatetest.test")
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(bin, "-test.run=^TestNewChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1", "CI="+ci)
		cmd.Dir = os.TempDir()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		const msg = "idlegatetest: a lab needs root to create network namespaces and TUN devices: run the tests as root, e.g. go test -exec sudo ./..."
		if !strings.Contains(string(out), msg) {
			t.Errorf("CI=%q: the output does not say why and what to do:\n%s", ci, out)
		}
		if ci == "" {
			if err != nil || !strings.Contains(string(out), "--- SKIP: TestNewChild") {
				t.Errorf("CI unset: %v, want a skip:\n%s", err, out)
			}
		} else if err == nil || !strings.Contains(string(out), "--- FAIL: TestNewChild") || !strings.Contains(string(out), "CI=true, so this test fails instead of skipping") {
			t.Errorf("CI=true: %v, want a failure saying CI=true:\n%s", err, out)
		}
	}
}

// TestExpireResetOnExpire: under a box that resets both ends at expiry (Azure's load
// balancer with TCP reset), Expire makes the gateway send those RSTs: the client's
// idle connection is reset without writing anything.
func TestExpireResetOnExpire(t *testing.T) {
	needRoot(t)
	l := idlegatetest.New(t, idlegatetest.Profile("azure-lb-tcp-reset"))
	if !l.Policy().ResetOnExpire {
		t.Fatal("azure-lb-tcp-reset has no reset_on_expire")
	}
	c, err := l.Dial("tcp", echoServer(t, l, 7000))
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	if n := l.Expire(control.Filter{}); n != 1 {
		t.Fatalf("Expire of every connection = %d, want the one", n)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on the idle connection after Expire: %v, want the gateway's RST (ECONNRESET)", err)
	}
	if got := l.Stats().Injected; got < 2 {
		t.Errorf("%d packets injected, want the RSTs to both ends", got)
	}
}
