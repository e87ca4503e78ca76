package main_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/lab/labtest"
)

// The tests of issue 18.1 from the command line: `idlegate lab` mixed with
// `ip netns` on a machine where nothing used `ip netns` since boot. Each runs
// in a mount namespace of its own with a fresh /run (labtest.FreshRun), in
// which the binary and `ip netns` see the same private /run/netns and
// /run/idlegate.

// freshRun is labtest.FreshRun handing the built binary to the child.
func freshRun(t *testing.T, propagation string) bool {
	t.Helper()
	return labtest.FreshRun(t, propagation, binEnv+"="+bin)
}

// otherNamespace is `ip netns add`'s namespace beside lab name, deleted at
// cleanup if the test did not.
func otherNamespace(t *testing.T) string {
	other := uniqueName("o-")
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", other).Run() })
	return other
}

// wantOnlyOther checks that nothing of lab name is left and that `ip netns`
// still has its own namespace and can delete it.
func wantOnlyOther(t *testing.T, name, other string) {
	t.Helper()
	if left := leftovers(t, name); len(left) > 0 {
		t.Errorf("after lab down: %v left behind", left)
	}
	labtest.IPNetns(t, "exec", other, "true")
	labtest.IPNetns(t, "delete", other)
	if exists(filepath.Join(labtest.NetnsDir, other)) {
		t.Errorf("ip netns delete %s left its file", other)
	}
}

// TestCLILabAndIPNetns: lab up --detach and `ip netns add` in either order,
// then lab down: exit 0 and nothing left (the issue: exit 1, "remove
// /run/netns/x-client: device or resource busy", when ip came second).
func TestCLILabAndIPNetns(t *testing.T) {
	needRoot(t)
	for _, order := range []string{"lab-first", "ip-first"} {
		for _, prop := range []string{labtest.Private, labtest.Shared} {
			t.Run(order+"/"+prop, func(t *testing.T) {
				if !freshRun(t, prop) {
					return
				}
				name, other := uniqueName("cli-"), otherNamespace(t)
				cleanupLab(t, name)
				if order == "ip-first" {
					labtest.IPNetns(t, "add", other)
				}
				want(t, 0, "lab", "up", "--name", name, "--detach")
				if order == "lab-first" {
					labtest.IPNetns(t, "add", other)
				}
				r := want(t, 0, "lab", "down", "--name", name)
				if strings.TrimSpace(r.stdout) != `lab "`+name+`" removed` {
					t.Errorf("lab down said %q; want only that the lab was removed", r.stdout)
				}
				wantOnlyOther(t, name, other)
			})
		}
	}
}

// TestCLILabDownRecoversHiddenMount: the leftovers of a lab whose namespaces
// were bound into a plain /run/netns (what idlegate did before, and what a
// killed gateway of that version leaves), then `ip netns add`: lab down
// removes them, says in one sentence what it did, and ip keeps its namespace.
func TestCLILabDownRecoversHiddenMount(t *testing.T) {
	needRoot(t)
	if !freshRun(t, labtest.Private) {
		return
	}
	name, other := uniqueName("cli-"), otherNamespace(t)
	cleanupLab(t, name)
	labtest.BindDirectly(t, lab.ClientNamespace(name))
	labtest.BindDirectly(t, lab.ServerNamespace(name))
	labtest.IPNetns(t, "add", other)

	r := want(t, 0, "lab", "down", "--name", name)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != `lab "`+name+`" removed` {
		t.Fatalf("lab down said %q; want that the lab was removed and one line on the recovery", r.stdout)
	}
	for _, w := range []string{lab.ClientNamespace(name), lab.ServerNamespace(name), "hidden", "ip netns add", "moved /run/netns aside"} {
		if !strings.Contains(lines[1], w) {
			t.Errorf("recovery line %q does not say %q", lines[1], w)
		}
	}
	wantOnlyOther(t, name, other)
	want(t, 4, "lab", "down", "--name", name)
}

// TestCLILabDownHiddenUnderSharedParent: where the kernel does not let idlegate
// reach the hidden mount (/run shared, the self-bind in a peer group of its
// own, as current iproute2 makes it), lab down exits 1 with one sentence
// saying what to do, and doing it works.
func TestCLILabDownHiddenUnderSharedParent(t *testing.T) {
	needRoot(t)
	if !freshRun(t, labtest.Shared) {
		return
	}
	name, other := uniqueName("cli-"), otherNamespace(t)
	cleanupLab(t, name)
	labtest.BindDirectly(t, lab.ClientNamespace(name))
	labtest.SelfBindOwnPeerGroup(t)
	labtest.IPNetns(t, "add", other)

	r := want(t, 1, "lab", "down", "--name", name)
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "umount /run/netns") || !strings.Contains(msg, "ip netns list") {
		t.Errorf("stderr %q: want one line saying to delete the other namespaces and umount /run/netns", r.stderr)
	}
	labtest.IPNetns(t, "delete", other)
	if err := unix.Unmount(labtest.NetnsDir, 0); err != nil {
		t.Fatalf("umount %s as the message says: %v", labtest.NetnsDir, err)
	}
	want(t, 0, "lab", "down", "--name", name)
	if left := leftovers(t, name); len(left) > 0 {
		t.Errorf("after following the advice and lab down: %v left behind", left)
	}
}
