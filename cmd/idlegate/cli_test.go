package main_test

// CLI tests run the real binary, built once by TestMain. Labs started with
// `lab up --detach` live in /run/idlegate/NAME and /run/netns/NAME-{client,server};
// every test removes its lab (lab down, then a kill and lab.Cleanup as a safety net)
// on every exit path.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/lab"
)

// bin is the idlegate binary under test.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

// binEnv hands the built binary to a child test process (labtest.FreshRun), so
// that it does not build it again.
const binEnv = "IDLEGATE_TEST_BIN"

func buildAndRun(m *testing.M) int {
	if b := os.Getenv(binEnv); b != "" {
		bin = b
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "idlegate-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "idlegate")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build idlegate: %v\n", err)
		return 1
	}
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		// TestAdviceApps's cases idle for seconds in labs of their own and use little
		// CPU: run them all at once instead of GOMAXPROCS at a time (-parallel N still
		// overrides this).
		flag.Set("test.parallel", strconv.Itoa(appsParallel))
	}
	return m.Run()
}

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

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// idlegate runs the binary with args and returns its exit code and output; it is
// killed after a minute.
func idlegate(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run idlegate %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// want runs idlegate and fails the test unless it exits with code.
func want(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := idlegate(t, args...)
	if r.code != code {
		t.Fatalf("idlegate %s: %v; want exit %d", strings.Join(args, " "), r, code)
	}
	return r
}

func uniqueName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// cleanupLab removes lab name at the end of the test whatever happened: lab down,
// then SIGKILL of a gateway still alive and lab.Cleanup.
func cleanupLab(t *testing.T, name string) {
	t.Cleanup(func() {
		idlegate(t, "lab", "down", "--name", name)
		if pid, err := lab.ReadPID(name, ""); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			waitDead(pid, 5*time.Second)
		}
		lab.Cleanup(name, "")
	})
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}

func waitDead(pid int, within time.Duration) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return !alive(pid)
}

func gatewayPID(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lab.DefaultRunBase, name, lab.PIDFile))
	if err != nil {
		t.Fatalf("pid file of lab %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file of lab %s: %v", name, err)
	}
	return pid
}

// leftovers lists what of lab name exists: namespaces, the run directory, and TUN
// links in the root namespace (named as lab names them before moving them).
func leftovers(t *testing.T, name string) []string {
	t.Helper()
	var found []string
	matches, _ := filepath.Glob(filepath.Join("/run/netns", name+"-*"))
	found = append(found, matches...)
	if dir := filepath.Join(lab.DefaultRunBase, name); exists(dir) {
		found = append(found, dir)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	prefix := fmt.Sprintf("ig%08x", h.Sum32())
	links, err := netlink.LinkList()
	// Links made or removed meanwhile (parallel tests) interrupt the dump: again.
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		links, err = netlink.LinkList()
	}
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			found = append(found, "link "+l.Attrs().Name)
		}
	}
	return found
}

// TestCLILabLifecycle: lab up/down, a SIGKILLed gateway's leftovers removed by the
// next lab up, the control commands, and the "already running" error.
func TestCLILabLifecycle(t *testing.T) {
	needRoot(t)
	name := uniqueName("cli-")
	cleanupLab(t, name)
	clientNS := filepath.Join("/run/netns", lab.ClientNamespace(name))

	want(t, 0, "lab", "up", "--name", name, "--detach")
	if !exists(clientNS) || !exists(filepath.Join("/run/netns", lab.ServerNamespace(name))) {
		t.Fatalf("lab up --detach returned but %s or its server namespace is missing", clientNS)
	}
	first := gatewayPID(t, name)
	if !alive(first) {
		t.Fatalf("gateway pid %d from the pid file is not running", first)
	}

	t.Run("ct list", func(t *testing.T) {
		// One TCP connection through the lab, so that the table has a row.
		var ln net.Listener
		if err := lab.Do(lab.ServerNamespace(name), func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr4, 0).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				defer c.Close()
				c.Read(make([]byte, 1))
			}
		}()
		var c net.Conn
		if err := lab.Do(lab.ClientNamespace(name), func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}).Dial("tcp", ln.Addr().String())
			return err
		}); err != nil {
			t.Fatalf("dial through the lab: %v", err)
		}
		defer c.Close()

		r := want(t, 0, "ct", "list", "--name", name, "-o", "json")
		var rows []control.Conn
		if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
			t.Fatalf("ct list -o json does not parse: %v\n%s", err, r.stdout)
		}
		local := c.LocalAddr().(*net.TCPAddr)
		found := false
		for _, row := range rows {
			if row.Proto == "tcp" && row.Orig.Src == lab.ClientAddr4.String() && row.Orig.SrcPort == uint16(local.Port) {
				found = true
			}
		}
		if !found {
			t.Errorf("ct list -o json has no row for %v: %s", local, r.stdout)
		}
	})

	t.Run("policy set and show", func(t *testing.T) {
		want(t, 0, "policy", "set", "--name", name, "timeouts.tcp.established=9s")
		r := want(t, 0, "policy", "show", "--name", name, "-o", "json")
		var v control.PolicyView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("policy show -o json does not parse: %v\n%s", err, r.stdout)
		}
		p := v.Policy
		if got := time.Duration(p.Timeouts.TCP.Established); got != 9*time.Second {
			t.Errorf("policy show: timeouts.tcp.established = %v, want 9s", got)
		}
	})

	t.Run("second lab up", func(t *testing.T) {
		for _, args := range [][]string{
			{"lab", "up", "--name", name},
			{"lab", "up", "--name", name, "--detach"},
		} {
			r := want(t, 4, args...)
			if !strings.Contains(r.stderr, "already running") {
				t.Errorf("idlegate %s: stderr %q does not say the lab is already running", strings.Join(args, " "), r.stderr)
			}
		}
		if pid := gatewayPID(t, name); pid != first || !alive(first) {
			t.Errorf("the running gateway (pid %d) was disturbed: pid file says %d, alive %v", first, pid, alive(first))
		}
	})

	want(t, 0, "lab", "down", "--name", name)
	if left := leftovers(t, name); len(left) > 0 {
		t.Fatalf("after lab down: %v left behind", left)
	}
	if !waitDead(first, 5*time.Second) {
		t.Errorf("gateway pid %d still runs after lab down", first)
	}

	// A gateway killed with SIGKILL cannot clean up: the next lab up must.
	want(t, 0, "lab", "up", "--name", name, "--detach")
	killed := gatewayPID(t, name)
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", killed, err)
	}
	if !waitDead(killed, 5*time.Second) {
		t.Fatalf("gateway pid %d survived SIGKILL", killed)
	}
	if !exists(clientNS) {
		t.Fatalf("%s vanished with the killed gateway; the test of leftovers proves nothing", clientNS)
	}
	want(t, 0, "lab", "up", "--name", name, "--detach")
	if pid := gatewayPID(t, name); pid == killed || !alive(pid) {
		t.Errorf("after lab up over leftovers: pid file says %d (killed one %d), alive %v", pid, killed, alive(pid))
	}
	want(t, 0, "lab", "down", "--name", name)
	if left := leftovers(t, name); len(left) > 0 {
		t.Fatalf("after the last lab down: %v left behind", left)
	}
}

// TestCLILabDownNoSuchLab: exit 4 and one sentence naming the lab.
func TestCLILabDownNoSuchLab(t *testing.T) {
	needRoot(t)
	t.Parallel()
	r := want(t, 4, "lab", "down", "--name", "nosuch")
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "idlegate: ") || !strings.Contains(msg, `"nosuch"`) {
		t.Errorf("stderr %q: want one line starting \"idlegate: \" that names the lab", r.stderr)
	}
	if strings.Contains(strings.TrimSuffix(msg, "."), ". ") {
		t.Errorf("stderr %q: want one sentence", r.stderr)
	}
}

// TestCLIBadConfig: an unknown key exits 2 naming the key and its line, before
// anything is created.
func TestCLIBadConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	yaml := "timeouts:\n  tcp:\n    establshed: 10s\norphan: reset\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	name := uniqueName("cli-")
	cleanupLab(t, name)
	r := want(t, 2, "lab", "up", "--name", name, "--config", path)
	if !strings.Contains(r.stderr, `"establshed"`) || !strings.Contains(r.stderr, "line 3") {
		t.Errorf("stderr %q: want the unknown key \"establshed\" and line 3 named", r.stderr)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("stderr %q: want one line", r.stderr)
	}
	if os.Geteuid() == 0 {
		if left := leftovers(t, name); len(left) > 0 {
			t.Errorf("a refused lab up left %v behind", left)
		}
	}
}
