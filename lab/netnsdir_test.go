package lab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/lab/labtest"
)

// The tests of the /run/netns mount convention change what /run/netns is
// mounted as, so each runs in a mount namespace of its own with a fresh /run
// (labtest.FreshRun); `ip netns` there sees the same private /run/netns. In
// the lab-first order the tree ends up as
//
//	/run (tmpfs, private or shared)
//	└── /run/netns            self-bind of the directory, shared
//	    ├── t-XXXXXX-client   nsfs, the lab's
//	    ├── t-XXXXXX-server   nsfs, the lab's
//	    └── o-XXXXXX          nsfs, `ip netns add`'s
//
// and the old order of things (a namespace bound into the plain directory
// first, then `ip netns add`) leaves the lab's first mounts underneath the
// self-bind, hidden, with visible copies on top.

// mountsAt lists the IDs of the mounts whose mount point is path, from
// /proc/self/mountinfo, read here independently of the code under test.
func mountsAt(t *testing.T, path string) (ids []string, parents []string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			ids, parents = append(ids, f[0]), append(parents, f[1])
		}
	}
	return ids, parents
}

// netnsDirMount returns the ID of the mount a lookup of /run/netns reaches
// and whether it is shared, or "" if /run/netns is no mount point. (The
// mountinfo of a test's fresh /run also lists the host's mounts underneath.)
func netnsDirMount(t *testing.T) (id string, shared bool) {
	t.Helper()
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, netnsDir, 0, unix.STATX_MNT_ID, &stx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[0] == strconv.FormatUint(stx.Mnt_id, 10) && f[4] == netnsDir {
			for _, o := range f[6:] {
				if o == "-" {
					break
				}
				shared = shared || strings.HasPrefix(o, "shared:")
			}
			return f[0], shared
		}
	}
	return "", false
}

// wantGone fails the test unless /run/netns/ns is gone and nothing is mounted
// at that path any more.
func wantGone(t *testing.T, ns string) {
	t.Helper()
	path := filepath.Join(netnsDir, ns)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there: %v", path, err)
	}
	if ids, _ := mountsAt(t, path); len(ids) > 0 {
		t.Errorf("mounts %v still at %s", ids, path)
	}
}

// wantIPNetnsWorks checks that `ip netns` still uses ns and can delete it.
func wantIPNetnsWorks(t *testing.T, ns string) {
	t.Helper()
	labtest.IPNetns(t, "exec", ns, "true")
	labtest.IPNetns(t, "delete", ns)
	wantGone(t, ns)
}

// TestLabFollowsIPNetnsConvention: a lab and `ip netns add` in either order on
// a machine where nothing used `ip netns` yet, with /run private (containers,
// CI) or shared (systemd). Up leaves /run/netns a shared mount point, and Down
// removes the lab's namespaces whatever `ip netns` did in between (issue 18.1:
// `remove /run/netns/x-client: device or resource busy` when ip came second).
func TestLabFollowsIPNetnsConvention(t *testing.T) {
	needRoot(t)
	for _, order := range []string{"lab-first", "ip-first"} {
		for _, prop := range []string{labtest.Private, labtest.Shared} {
			t.Run(order+"/"+prop, func(t *testing.T) {
				if !labtest.FreshRun(t, prop) {
					return
				}
				name, other := uniqueName(t), "o-"+uniqueName(t)[2:]
				runBase := t.TempDir()
				t.Cleanup(func() {
					exec.Command("ip", "netns", "delete", other).Run()
					Cleanup(name, runBase)
				})
				if order == "ip-first" {
					labtest.IPNetns(t, "add", other)
				}
				l, err := Up(Config{Name: name, RunBase: runBase})
				if err != nil {
					t.Fatal(err)
				}
				if id, shared := netnsDirMount(t); id == "" || !shared {
					t.Errorf("after Up, %s is mount %q, shared %v; want a shared mount point as ip-netns(8) keeps it", netnsDir, id, shared)
				}
				if order == "lab-first" {
					labtest.IPNetns(t, "add", other)
				}
				out, err := exec.Command("ip", "netns", "list").CombinedOutput()
				if err != nil {
					t.Fatal(err)
				}
				for _, ns := range []string{l.Client.Namespace, l.Server.Namespace, other} {
					if !strings.Contains(string(out), ns) {
						t.Errorf("ip netns list lacks %s:\n%s", ns, out)
					}
				}
				if err := l.Down(); err != nil {
					t.Fatalf("Down after `ip netns add` (%s): %v", order, err)
				}
				wantGone(t, l.Client.Namespace)
				wantGone(t, l.Server.Namespace)
				wantIPNetnsWorks(t, other)
			})
		}
	}
}

// TestCleanupRecoversHiddenMount reproduces the state: the lab's
// namespaces bound into a plain /run/netns (as before this fix, or by a tool
// using netns.NewNamed), then `ip netns add`, whose self-bind copies them and
// hides the originals. Cleanup (what `lab down` and the next `lab up` do with
// leftovers) removes them, and `ip netns` keeps its own namespace. With /run
// private the hidden originals are reached by moving the self-bind aside;
// with /run shared, Debian's ip puts the self-bind in /run's peer group and
// the originals go with their copies.
func TestCleanupRecoversHiddenMount(t *testing.T) {
	needRoot(t)
	for _, prop := range []string{labtest.Private, labtest.Shared} {
		t.Run(prop, func(t *testing.T) {
			if !labtest.FreshRun(t, prop) {
				return
			}
			name, other := uniqueName(t), "o-"+uniqueName(t)[2:]
			runBase := t.TempDir()
			t.Cleanup(func() {
				exec.Command("ip", "netns", "delete", other).Run()
				Cleanup(name, runBase)
			})
			namespaces := []string{ClientNamespace(name), ServerNamespace(name)}
			for _, ns := range namespaces {
				labtest.BindDirectly(t, ns)
			}
			labtest.IPNetns(t, "add", other)
			dir, _ := netnsDirMount(t)
			if prop == labtest.Private {
				for _, ns := range namespaces {
					// The state: a copy on the self-bind, the original underneath.
					ids, parents := mountsAt(t, filepath.Join(netnsDir, ns))
					if len(ids) != 2 || !slices.Contains(parents, dir) || !slices.ContainsFunc(parents, func(p string) bool { return p != dir }) {
						t.Fatalf("%s: mounts %v with parents %v; want one on the self-bind %s and one hidden under it", ns, ids, parents, dir)
					}
				}
			}

			if err := Cleanup(name, runBase); err != nil {
				t.Fatalf("Cleanup of namespaces hidden under `ip netns add`'s self-bind: %v", err)
			}
			for _, ns := range namespaces {
				wantGone(t, ns)
			}
			if got, _ := netnsDirMount(t); got != dir {
				t.Errorf("%s is mount %q after Cleanup, want the self-bind %s back in place", netnsDir, got, dir)
			}
			wantIPNetnsWorks(t, other)
		})
	}
}

// TestDeleteHiddenUnderSharedParent: where /run is shared and the self-bind
// was made by an iproute2 that puts it in a peer group of its own (it makes it
// private before shared), the hidden originals cannot be reached: the kernel
// refuses to move a mount off a shared parent. DeleteNamespace says what to
// do in one sentence, and doing it works.
func TestDeleteHiddenUnderSharedParent(t *testing.T) {
	needRoot(t)
	if !labtest.FreshRun(t, labtest.Shared) {
		return
	}
	name, other := uniqueName(t), "o-"+uniqueName(t)[2:]
	ns := ClientNamespace(name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "delete", other).Run()
		DeleteNamespace(ns)
	})
	labtest.BindDirectly(t, ns)
	labtest.SelfBindOwnPeerGroup(t)
	labtest.IPNetns(t, "add", other)

	err := DeleteNamespace(ns)
	if err == nil {
		t.Fatal("DeleteNamespace reached a mount the kernel cannot move aside; the test's setup is wrong")
	}
	t.Logf("DeleteNamespace: %v", err)
	for _, want := range []string{ns, "ip netns list", "umount " + netnsDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Count(err.Error(), ". ") > 0 || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is more than one sentence", err)
	}
	// What the sentence says to do.
	labtest.IPNetns(t, "delete", other)
	if err := unix.Unmount(netnsDir, 0); err != nil {
		t.Fatalf("umount %s: %v", netnsDir, err)
	}
	if err := DeleteNamespace(ns); err != nil {
		t.Fatalf("DeleteNamespace after following its advice: %v", err)
	}
	wantGone(t, ns)
}

// TestRecoverHidden: RecoverHidden unmounts only the hidden originals; the
// visible copies keep the namespaces (as a running lab needs them), and after
// it `ip netns delete` itself can remove them. Where /run is shared and
// Debian's ip made the self-bind, nothing counts as hidden: the originals go
// with their copies by propagation.
func TestRecoverHidden(t *testing.T) {
	needRoot(t)
	for _, prop := range []string{labtest.Private, labtest.Shared} {
		t.Run(prop, func(t *testing.T) {
			if !labtest.FreshRun(t, prop) {
				return
			}
			name, other := uniqueName(t), "o-"+uniqueName(t)[2:]
			namespaces := []string{ClientNamespace(name), ServerNamespace(name)}
			t.Cleanup(func() {
				exec.Command("ip", "netns", "delete", other).Run()
				for _, ns := range namespaces {
					DeleteNamespace(ns)
				}
			})
			ids := map[string]uint64{}
			for _, ns := range namespaces {
				labtest.BindDirectly(t, ns)
				n, err := OpenNetns(ns)
				if err != nil {
					t.Fatal(err)
				}
				ids[ns] = n.ID()
				n.Close()
			}
			labtest.IPNetns(t, "add", other)

			note, err := RecoverHidden(namespaces...)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("RecoverHidden: %q", note)
			if prop == labtest.Shared {
				if note != "" {
					t.Errorf("RecoverHidden = %q; want nothing done where the originals are peers of their copies", note)
				}
			} else {
				for _, want := range append(namespaces, "ip netns add", "moved "+netnsDir+" aside") {
					if !strings.Contains(note, want) {
						t.Errorf("note %q does not say %q", note, want)
					}
				}
				if strings.Contains(note, ". ") || strings.Contains(note, "\n") {
					t.Errorf("note %q is more than one sentence", note)
				}
			}
			dir, _ := netnsDirMount(t)
			for _, ns := range namespaces {
				if ids, parents := mountsAt(t, filepath.Join(netnsDir, ns)); prop == labtest.Private && (len(ids) != 1 || parents[0] != dir) {
					t.Errorf("%s after RecoverHidden: mounts %v with parents %v; want just the one on %s (mount %s)", ns, ids, parents, netnsDir, dir)
				}
				n, err := OpenNetns(ns)
				if err != nil {
					t.Fatalf("%s after RecoverHidden: %v", ns, err)
				}
				if n.ID() != ids[ns] {
					t.Errorf("%s is namespace %d after RecoverHidden, want %d", ns, n.ID(), ids[ns])
				}
				n.Close()
			}
			if note, err := RecoverHidden(namespaces...); note != "" || err != nil {
				t.Errorf("second RecoverHidden = %q, %v; want nothing to do", note, err)
			}
			for _, ns := range namespaces {
				labtest.IPNetns(t, "delete", ns)
				wantGone(t, ns)
			}
			wantIPNetnsWorks(t, other)
		})
	}
}
