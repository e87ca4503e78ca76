package lab

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenNetns: namespaces open by name, path and pid, each checked to be a
// network namespace; what is not there matches ErrNoSuchNamespace with a
// sentence naming it. Needs no root: it opens this process's own namespace.
func TestOpenNetns(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	for what, open := range map[string]func() (*Netns, error){
		"path": func() (*Netns, error) { return OpenNetnsPath("/proc/self/ns/net") },
		"pid":  func() (*Netns, error) { return OpenNetnsPID(os.Getpid()) },
	} {
		n, err := open()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n.ID() != st.Ino {
			t.Errorf("%s: ID %d, want the inode of /proc/self/ns/net, %d", what, n.ID(), st.Ino)
		}
		if err := n.Close(); err != nil {
			t.Errorf("%s: Close: %v", what, err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("%s: second Close: %v", what, err)
		}
	}

	tests := []struct {
		name    string
		open    func() (*Netns, error)
		missing bool   // matches ErrNoSuchNamespace
		want    string // in the message
	}{
		{name: "missing name", open: func() (*Netns, error) { return OpenNetns("t-absent-ns") }, missing: true, want: `"t-absent-ns"`},
		{name: "missing path", open: func() (*Netns, error) { return OpenNetnsPath("/nonexistent/ns/net") }, missing: true, want: "/nonexistent/ns/net"},
		{name: "missing pid", open: func() (*Netns, error) { return OpenNetnsPID(1 << 30) }, missing: true, want: "1073741824"},
		{name: "not a namespace", open: func() (*Netns, error) { return OpenNetnsPath("/proc/self/stat") }, want: "is not a network namespace"},
		{name: "another kind of namespace", open: func() (*Netns, error) { return OpenNetnsPath("/proc/self/ns/uts") }, want: "is not a network namespace"},
		{name: "name with a slash", open: func() (*Netns, error) { return OpenNetns("../etc") }, want: "no '/'"},
		{name: "bad pid", open: func() (*Netns, error) { return OpenNetnsPID(0) }, want: "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.open()
			if err == nil {
				n.Close()
				t.Fatal("opened")
			}
			if errors.Is(err, ErrNoSuchNamespace) != tt.missing || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want ErrNoSuchNamespace %v, containing %q", err, tt.missing, tt.want)
			}
		})
	}
}

// TestNetnsByPID: a lab namespace opened through a process in it (the way the
// wedge attaches to a container) is the same namespace as by name, and Run,
// Start and Netlink work in it.
func TestNetnsByPID(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{MTU: 1440})
	sleeper := exec.Command("/bin/sleep", "30")
	if err := StartIn(l.Client.Namespace, sleeper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	byName, err := OpenNetns(l.Client.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	n, err := OpenNetnsPID(sleeper.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.ID() != byName.ID() {
		t.Fatalf("pid %d is in namespace %d, want %s's %d", sleeper.Process.Pid, n.ID(), l.Client.Namespace, byName.ID())
	}

	h, err := n.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.Netlink(); err != nil || again != h {
		t.Errorf("second Netlink = %p, %v; want the same handle %p", again, err, h)
	}
	if link, err := h.LinkByName(LinkName); err != nil || link.Attrs().MTU != 1440 {
		t.Errorf("netlink sees %s: %v, %v; want it with MTU 1440", LinkName, link, err)
	}
	if err := n.Run(func() error { _, err := net.InterfaceByName(LinkName); return err }); err != nil {
		t.Errorf("Run: %s not visible: %v", LinkName, err)
	}
	var out bytes.Buffer
	cat := exec.Command("/bin/cat", "/sys/class/net/"+LinkName+"/mtu")
	cat.Stdout, cat.Stderr = &out, &out
	cat.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.Start(cat); err != nil {
		t.Fatal(err)
	}
	if err := cat.Wait(); err != nil || strings.TrimSpace(out.String()) != "1440" {
		t.Errorf("cat gw0's mtu via Start: %v, %q; want 1440", err, out.String())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(LinkName); err == nil {
		t.Error("gw0 is visible in the test's own namespace")
	}
}

// TestCreateNamespaceExisting: creating a name that exists fails and leaves
// the existing namespace alone.
func TestCreateNamespaceExisting(t *testing.T) {
	needRoot(t)
	t.Parallel()
	l := newLab(t, Config{})
	if n, err := CreateNamespace(l.Server.Namespace); err == nil {
		n.Close()
		t.Fatal("CreateNamespace over a lab's namespace succeeded")
	} else if !errors.Is(err, os.ErrExist) {
		t.Errorf("CreateNamespace over an existing one: %v, want it to say it exists", err)
	}
	n, err := OpenNetns(l.Server.Namespace)
	if err != nil {
		t.Fatalf("the existing namespace was disturbed: %v", err)
	}
	defer n.Close()
	h, err := n.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName(LinkName); err != nil {
		t.Errorf("%s gone from %s: %v", LinkName, l.Server.Namespace, err)
	}
}
