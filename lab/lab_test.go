package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/tun"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The tests build this topology, with a copy pump in place of the gateway:
//
//	  t-XXXXXX-client netns         test process (root netns)          t-XXXXXX-server netns
//	+--------------------+        +----------------------------+       +--------------------+
//	| gw0 198.18.0.2/24  |<- fd ->| Client.Dev ==> Server.Dev  |<- fd->| gw0 198.19.0.2/24  |
//	|     fd00:18::2/64  |        | Client.Dev <== Server.Dev  |       |     fd00:19::2/64  |
//	| TCP dialer         |        |   (pump: copies packets)   |       | TCP listener       |
//	+--------------------+        +----------------------------+       +--------------------+
//
// Each test has its own lab name and run base, so tests run in parallel.

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

// uniqueName returns "t-" and 6 random hex digits.
func uniqueName(t *testing.T) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "t-" + hex.EncodeToString(b)
}

// newLab brings up a lab with a fresh name and run base and takes it down at
// cleanup; a safety net removes leftovers even if the test lost the Lab.
func newLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = uniqueName(t)
	}
	if cfg.RunBase == "" {
		cfg.RunBase = t.TempDir()
	}
	t.Cleanup(func() { Cleanup(cfg.Name, cfg.RunBase) })
	l, err := Up(cfg)
	if err != nil {
		t.Fatalf("Up(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return l
}

// pump copies every packet between the two devices, router solicitations and
// MLD reports included, until cleanup closes the devices.
func pump(t *testing.T, l *Lab) {
	var wg sync.WaitGroup
	copyPackets := func(dst, src tun.Device) {
		defer wg.Done()
		bufs, sizes := [][]byte{make([]byte, 65535)}, make([]int, 1)
		for {
			n, err := src.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				if _, err := dst.Write([][]byte{bufs[i][:sizes[i]]}, 0); errors.Is(err, os.ErrClosed) {
					return
				}
			}
		}
	}
	wg.Add(2)
	go copyPackets(l.Server.Dev, l.Client.Dev)
	go copyPackets(l.Client.Dev, l.Server.Dev)
	t.Cleanup(func() {
		l.Client.Dev.Close()
		l.Server.Dev.Close()
		wg.Wait()
	})
}

// tcpEcho dials server from the client namespace, sends 256 KiB and checks
// that the server saw the client's own address and echoed every byte back.
func tcpEcho(t *testing.T, l *Lab, client, server netip.Addr) {
	t.Helper()
	var ln net.Listener
	err := Do(l.Server.Namespace, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(server, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type accepted struct {
		remote netip.Addr
		err    error
	}
	served := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- accepted{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(c, c)
		served <- accepted{remote: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(), err: err}
	}()

	var conn net.Conn
	err = Do(l.Client.Namespace, func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %v from %s: %v", ln.Addr(), l.Client.Namespace, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if got := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != client {
		t.Errorf("dialer bound to %v, want %v", got, client)
	}

	want := make([]byte, 256<<10)
	rand.Read(want)
	writeErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(want)
		conn.(*net.TCPConn).CloseWrite()
		writeErr <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo: got %d bytes, want the %d sent", len(got), len(want))
	}
	a := <-served
	if a.err != nil {
		t.Fatalf("server: %v", a.err)
	}
	if a.remote != client {
		t.Errorf("server saw the client as %v, want %v", a.remote, client)
	}
}

func TestUpBuildsTopology(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{MTU: 1400})

	if fi, err := os.Stat(l.RunDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir %s: %v, mode %v; want 0700", l.RunDir, err, fi.Mode().Perm())
	}
	if pid, err := ReadPID(l.Name, filepath.Dir(l.RunDir)); err != nil || pid != os.Getpid() {
		t.Errorf("ReadPID = %d, %v; want %d (this process)", pid, err, os.Getpid())
	}
	if !Exists(l.Name, filepath.Dir(l.RunDir)) {
		t.Error("Exists = false for a running lab")
	}
	for _, side := range []byte{'c', 's'} {
		if _, err := netlink.LinkByName(tunName(l.Name, side)); err == nil {
			t.Errorf("TUN %s is still in the root namespace", tunName(l.Name, side))
		}
	}

	tests := []struct {
		name   string
		side   Side
		ns     string
		routes []netip.Prefix
	}{
		{name: "client", side: l.Client, ns: l.Name + "-client", routes: []netip.Prefix{OutsideNet4, OutsideNet6, InsideNet4, InsideNet6}},
		{name: "server", side: l.Server, ns: l.Name + "-server", routes: []netip.Prefix{InsideNet4, InsideNet6, OutsideNet4, OutsideNet6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.side.Namespace != tt.ns {
				t.Fatalf("Namespace = %q, want %q", tt.side.Namespace, tt.ns)
			}
			if got := tt.side.Dev.Name(); got != LinkName {
				t.Errorf("Dev.Name() = %q, want %q", got, LinkName)
			}
			ns, err := OpenNetns(tt.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			h, err := ns.Netlink()
			if err != nil {
				t.Fatal(err)
			}

			link, err := h.LinkByName(LinkName)
			if err != nil {
				t.Fatalf("%s in %s: %v", LinkName, tt.ns, err)
			}
			if a := link.Attrs(); a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
				t.Errorf("%s: MTU %d flags %v; want 1400 and up", LinkName, a.MTU, a.Flags)
			}
			if lo, err := h.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("lo is not up: %v", err)
			}

			addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []netip.Prefix{netip.PrefixFrom(tt.side.Addr4, 24), netip.PrefixFrom(tt.side.Addr6, 64)} {
				i := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == want.String() })
				if i < 0 {
					t.Errorf("address %v missing; have %v", want, addrs)
				} else if addrs[i].Flags&unix.IFA_F_TENTATIVE != 0 {
					t.Errorf("address %v is tentative: IFA_F_NODAD was not applied", want)
				}
			}

			routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
			if err != nil {
				t.Fatal(err)
			}
			var dsts []string
			for _, r := range routes {
				if r.Dst == nil || r.Dst.IP.IsUnspecified() {
					t.Errorf("default route %v: the lab must route nowhere else", r)
					continue
				}
				dsts = append(dsts, r.Dst.String())
			}
			for _, want := range tt.routes {
				if !slices.Contains(dsts, want.String()) {
					t.Errorf("route to %v missing; have %v", want, dsts)
				}
			}
		})
	}
}

func retryDump[T any](list func() ([]T, error)) ([]T, error) {
	for range 5 {
		v, err := list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return list()
}

func TestCopyPumpCarriesTCP(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{})
	pump(t, l)
	t.Run("ipv4", func(t *testing.T) { tcpEcho(t, l, ClientAddr4, ServerAddr4) })
	t.Run("ipv6", func(t *testing.T) { tcpEcho(t, l, ClientAddr6, ServerAddr6) })
}

func TestTwoLabsSideBySide(t *testing.T) {
	needRoot(t)
	t.Parallel()
	a, b := newLab(t, Config{}), newLab(t, Config{})
	pump(t, a)
	pump(t, b)
	for _, l := range []*Lab{a, b, a} {
		tcpEcho(t, l, ClientAddr4, ServerAddr4)
		tcpEcho(t, l, ClientAddr6, ServerAddr6)
	}
}

func TestDownRemovesEverything(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{})
	runBase := filepath.Dir(l.RunDir)
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{l.Client.Namespace, l.Server.Namespace} {
		if _, err := os.Lstat(filepath.Join(netnsDir, ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s after Down: %v", ns, err)
		}
	}
	if _, err := os.Lstat(l.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir after Down: %v", err)
	}
	if Exists(l.Name, runBase) {
		t.Error("Exists = true after Down")
	}
	if _, err := l.Client.Dev.Read([][]byte{make([]byte, 1500)}, []int{0}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Down: %v, want os.ErrClosed", err)
	}
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if err := Cleanup(l.Name, runBase); !errors.Is(err, ErrNoSuchLab) {
		t.Errorf("Cleanup after Down: %v, want ErrNoSuchLab", err)
	}
}

func TestUpInUse(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{}) // its pid file names this live process
	_, err := Up(Config{Name: l.Name, RunBase: filepath.Dir(l.RunDir)})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Up: %v, want ErrInUse", err)
	}
	want := fmt.Sprintf("lab %q is already running (pid %d); run `idlegate lab down --name %s`", l.Name, os.Getpid(), l.Name)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not contain %q", err, want)
	}
	if !NamespaceExists(l.Client.Namespace) || !NamespaceExists(l.Server.Namespace) {
		t.Error("the failed Up removed the running lab's namespaces")
	}
}

func TestUpRemovesLeftovers(t *testing.T) {
	needRoot(t)
	t.Parallel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		leave func(t *testing.T, l *Lab) // turn a running lab into what a SIGKILL leaves
	}{
		{name: "pid file of a dead process", leave: func(t *testing.T, l *Lab) {
			if err := l.WritePID(dead.Process.Pid); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no pid file", leave: func(t *testing.T, l *Lab) {
			if err := os.Remove(filepath.Join(l.RunDir, PIDFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "namespaces only", leave: func(t *testing.T, l *Lab) {
			if err := os.RemoveAll(l.RunDir); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name, runBase := uniqueName(t), t.TempDir()
			t.Cleanup(func() { Cleanup(name, runBase) })
			old, err := Up(Config{Name: name, RunBase: runBase})
			if err != nil {
				t.Fatal(err)
			}
			// A killed gateway's descriptors are closed by the kernel; the
			// namespaces and run directory stay.
			old.Client.Dev.Close()
			old.Server.Dev.Close()
			tt.leave(t, old)

			l := newLab(t, Config{Name: name, RunBase: runBase})
			pump(t, l)
			tcpEcho(t, l, ClientAddr4, ServerAddr4)
		})
	}
}

func TestUpRollsBackOnFailure(t *testing.T) {
	needRoot(t)
	t.Parallel()
	name, runBase := uniqueName(t), t.TempDir()
	t.Cleanup(func() { Cleanup(name, runBase) })
	// Hold the server side's TUN name so that Up fails after the client side
	// and both namespaces exist.
	squatter, err := tun.OpenWater(tunName(name, 's'), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()

	if _, err := Up(Config{Name: name, RunBase: runBase}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Up with its TUN name taken: %v, want an error saying the name is in use", err)
	}
	if Exists(name, runBase) {
		t.Error("a failed Up left namespaces or the run directory behind")
	}
	if _, err := netlink.LinkByName(tunName(name, 'c')); err == nil {
		t.Error("a failed Up left the client TUN behind")
	}
}

func TestDo(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{})
	for range 20 { // threads Do restores go back to the pool; none may stay inside
		err := Do(l.Client.Namespace, func() error {
			_, err := net.InterfaceByName(LinkName)
			return err
		})
		if err != nil {
			t.Fatalf("Do: %s not visible inside: %v", LinkName, err)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := net.InterfaceByName(LinkName); err == nil {
				t.Errorf("%s visible outside Do: a thread was left in the namespace", LinkName)
			}
		})
	}
	wg.Wait()
	sentinel := errors.New("from fn")
	if err := Do(l.Server.Namespace, func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := Do(l.Name+"-nowhere", func() error { return nil }); !errors.Is(err, ErrNoSuchLab) {
		t.Errorf("Do in a missing namespace: %v, want ErrNoSuchLab", err)
	}
}

func TestStartIn(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{MTU: 1420})

	var out bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", "cat /sys/class/net/gw0/mtu; cat /proc/net/dev")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := StartIn(l.Server.Namespace, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out.Bytes())
	}
	if !strings.HasPrefix(out.String(), "1420\n") || !strings.Contains(out.String(), LinkName+":") {
		t.Errorf("output lacks gw0's MTU 1420 and its /proc/net/dev line:\n%s", out.Bytes())
	}
	if _, err := os.Stat("/sys/class/net/" + LinkName); err == nil {
		t.Error("the child's sysfs mount leaked into this mount namespace")
	}

	// The forking thread must outlive a child with Pdeathsig.
	cmd = exec.Command("/bin/sleep", "0.3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := StartIn(l.Client.Namespace, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child with Pdeathsig: %v, want a normal exit", err)
	}
	if err := StartIn(l.Name+"-nowhere", exec.Command("/bin/true")); !errors.Is(err, ErrNoSuchLab) {
		t.Errorf("StartIn in a missing namespace: %v, want ErrNoSuchLab", err)
	}
}

// TestExecIn re-runs the test binary, which replaces itself with cat inside
// the namespace (see TestMain).
func TestExecIn(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{MTU: 1300})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), execInEnv+"="+l.Client.Namespace)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(1300) {
		t.Errorf("cat /sys/class/net/gw0/mtu via ExecIn = %q, want 1300", got)
	}
}

const execInEnv = "IDLEGATE_LAB_TEST_EXEC_IN"

func TestMain(m *testing.M) {
	if ns := os.Getenv(execInEnv); ns != "" {
		err := ExecIn(ns, []string{"cat", "/sys/class/net/" + LinkName + "/mtu"})
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"idlegate", true},
		{"t-1a2b3c", true},
		{"0", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxNameLen+1), false},
		{"-lead", false},
		{"Upper", false},
		{"has space", false},
		{"dot.ted", false},
		{"slash/y", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.name)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadName)) {
				t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestUpRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "bad name", cfg: Config{Name: "No"}, want: "pick another --name"},
		{name: "MTU below the IPv6 minimum", cfg: Config{Name: "ok", MTU: 1279}, want: "IPv6 needs at least 1280"},
		{name: "MTU too large", cfg: Config{Name: "ok", MTU: 70000}, want: "pick an MTU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Up(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Up(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestMissingLab(t *testing.T) {
	runBase := t.TempDir()
	if err := Cleanup("t-absent", runBase); !errors.Is(err, ErrNoSuchLab) {
		t.Errorf("Cleanup: %v, want ErrNoSuchLab", err)
	}
	if _, err := ReadPID("t-absent", runBase); !errors.Is(err, ErrNoSuchLab) {
		t.Errorf("ReadPID: %v, want ErrNoSuchLab", err)
	}
	if Exists("t-absent", runBase) {
		t.Error("Exists = true")
	}
}

func TestTunNames(t *testing.T) {
	c, s := tunName("idlegate", 'c'), tunName("idlegate", 's')
	if len(c) > 15 || c[:len(c)-1] != s[:len(s)-1] || c == s || c == tunName("idlegatf", 'c') {
		t.Errorf("tunName: %q %q", c, s)
	}
}

// TestMissingLabNamesIt: the errors about a missing lab name it.
func TestMissingLabNamesIt(t *testing.T) {
	runBase := t.TempDir()
	for what, err := range map[string]error{
		"Cleanup": Cleanup("t-absent", runBase),
		"ReadPID": func() error { _, err := ReadPID("t-absent", runBase); return err }(),
		"Do":      Do(ClientNamespace("t-absent"), func() error { return nil }),
	} {
		if !errors.Is(err, ErrNoSuchLab) || !strings.Contains(err.Error(), `"t-absent"`) {
			t.Errorf("%s: %v, want ErrNoSuchLab naming lab \"t-absent\"", what, err)
		}
	}
	if got, want := RunDir("x", ""), filepath.Join(DefaultRunBase, "x"); got != want {
		t.Errorf("RunDir(x, \"\") = %q, want %q", got, want)
	}
}

// TestProcStat: this process is alive and started a moment ago; a pid that is
// not running is not alive.
func TestProcStat(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Error("alive(own pid) = false")
	}
	if alive(1 << 30) {
		t.Error("alive(1<<30) = true")
	}
	started, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(started); d < -time.Second || d > time.Hour {
		t.Errorf("processStart(own pid) = %v, %v ago", started, d)
	}
}
