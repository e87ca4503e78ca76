// Package labtest runs a namespace test in a mount namespace of its own, for
// tests that change what /run/netns is mounted as. Everything else on the
// machine (other labs, `ip netns`, other test runs) keeps using the real /run:
//
//	host mount namespace                 test's private mount namespace
//	+------------------------------+     +-------------------------------------+
//	| /run, /run/netns as they are |     | /run: a fresh tmpfs (private or     |
//	| parent test: waits, reports  |---->|   shared), /run/netns not yet there |
//	+------------------------------+     | child test binary runs one test     |
//	                                     +-------------------------------------+
//
// Network namespaces are not private to the child: the kernel's are global, so
// a test still names its namespaces uniquely and removes them.
package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Propagation of the fresh /run in the child's mount namespace.
const (
	// Private is a /run whose parent mount is private, as on a machine without
	// systemd (a container, this project's CI runner).
	Private = "private"
	// Shared is a /run that is a shared mount, as systemd makes every mount.
	Shared = "shared"
)

// childEnv names the test a child process runs in its mount namespace; hostEnv
// carries the parent's mount namespace so the child can prove it left it.
const (
	childEnv = "IDLEGATE_LABTEST_FRESH_RUN"
	hostEnv  = "IDLEGATE_LABTEST_HOST_MNT"
)

// FreshRun runs test t again in a child process of the test binary with a
// mount namespace of its own, in which /run is an empty tmpfs with the given
// propagation (Private or Shared): /run/netns does not exist there until
// something creates it, as on a machine where nothing used `ip netns` since
// boot. In the parent it waits for the child, fails t with the child's output
// if the child failed or did not run t, and returns false: the caller returns
// at once. In the child it returns true and the caller's test body runs there.
//
// t needs root. Call it first in a test (or subtest) of its own, before
// t.Parallel; the child runs exactly t.Name() with -test.v, so keep names free
// of spaces. env is added to the child's environment.
func FreshRun(t *testing.T, propagation string, env ...string) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		enterFreshRun(t, propagation)
		return true
	}
	if propagation != Private && propagation != Shared {
		t.Fatalf("labtest.FreshRun: propagation %q: want labtest.Private or labtest.Shared", propagation)
	}
	host, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(run, "/"), "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(append(os.Environ(), childEnv+"="+t.Name(), hostEnv+"="+host), env...)
	// The child starts in a new mount namespace; Go's fork makes every mount in
	// it private (MS_REC|MS_PRIVATE on /) before the exec, so nothing the child
	// mounts or unmounts propagates back here.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a private mount namespace: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s did not run in the private mount namespace (a skip or a filter that matched nothing):\n%s", t.Name(), out)
	}
	t.Logf("in a private mount namespace:\n%s", out)
	return false
}

// enterFreshRun mounts the fresh /run in the child, after checking that the
// child is not in the host's mount namespace: a tmpfs over the host's /run
// would hide every other lab's namespaces.
func enterFreshRun(t *testing.T, propagation string) {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if host := os.Getenv(hostEnv); host == "" || host == self {
		t.Fatalf("labtest: still in the host's mount namespace %s; refusing to mount over /run", self)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs on /run: %v", err)
	}
	if propagation == Shared {
		if err := unix.Mount("", "/run", "", unix.MS_SHARED, ""); err != nil {
			t.Fatalf("make /run shared: %v", err)
		}
	}
}

// NetnsDir is where ip-netns(8) keeps named namespaces.
const NetnsDir = "/run/netns"

// IPNetns runs `ip netns ARGS...` and fails t if it fails.
func IPNetns(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// BindDirectly binds a new network namespace to /run/netns/name straight into
// whatever /run/netns is, without making it a mount point first: what
// netns.NewNamed does, and idlegate did before it followed ip-netns(8)'s mount
// convention. A later `ip netns add` then hides this mount under its
// self-bind. The caller removes the namespace.
func BindDirectly(t *testing.T, name string) {
	t.Helper()
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := make(chan error)
	go func() {
		runtime.LockOSThread() // left in the new namespace: the thread dies with the goroutine
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		c <- err
	}()
	if err := <-c; err != nil {
		t.Fatalf("bind namespace %s into %s directly: %v", name, filepath.Join(NetnsDir, name), err)
	}
}

// SelfBindOwnPeerGroup makes /run/netns a shared bind mount of itself the way
// current iproute2 does (MS_BIND|MS_REC, then MS_PRIVATE|MS_REC so that it
// starts a peer group of its own, then MS_SHARED|MS_REC), where Debian's
// `ip netns add` (6.1) skips the private step.
func SelfBindOwnPeerGroup(t *testing.T) {
	t.Helper()
	for _, m := range []struct {
		src   string
		flags uintptr
	}{{NetnsDir, unix.MS_BIND | unix.MS_REC}, {"", unix.MS_PRIVATE | unix.MS_REC}, {"", unix.MS_SHARED | unix.MS_REC}} {
		if err := unix.Mount(m.src, NetnsDir, "none", m.flags, ""); err != nil {
			t.Fatalf("mount %s (flags %#x): %v", NetnsDir, m.flags, err)
		}
	}
}
