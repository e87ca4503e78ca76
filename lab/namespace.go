package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespaces live where ip-netns(8) keeps them, so `ip netns list` and
// `ip netns exec` see lab namespaces too.
const netnsDir = "/run/netns"

// ErrNoSuchNamespace matches the error for a network namespace that is not
// there: no /run/netns/NAME, no process PID, no file at the path.
var ErrNoSuchNamespace = errors.New("no such network namespace")

// Netns is an open network namespace: a descriptor that keeps the namespace
// alive while it is open, and the netlink handle bound to it (opened on first
// use). It is the one place in idlegate that enters a namespace.
//
// A Netns never owns the namespace's name or existence: Close releases the
// descriptor and the handle only. CreateNamespace and DeleteNamespace make and
// remove named namespaces; a Netns opened by path or pid (a container's) is
// only ever entered and configured.
//
// Network namespaces belong to threads, not processes. Run, Start and Exec
// switch one on a goroutine of their own, locked to its OS thread. When the
// thread cannot be put back exactly as it was, the goroutine ends still
// locked, and the Go runtime then discards the thread instead of reusing it
// for other goroutines.
//
// The methods are safe for concurrent use; Close must come after all other
// calls have returned.
type Netns struct {
	name string         // as opened: a /run/netns name, or a path
	fd   netns.NsHandle // -1 once closed
	id   uint64         // the namespace's inode number: net:[id]

	mu sync.Mutex // guards nl
	nl *netlink.Handle
}

// OpenNetns opens the named network namespace /run/netns/name, made by
// CreateNamespace, `ip netns add` or anything that follows ip-netns(8). A
// missing one matches ErrNoSuchNamespace.
func OpenNetns(name string) (*Netns, error) {
	if err := checkNetnsName(name); err != nil {
		return nil, err
	}
	n, err := openNetns(filepath.Join(netnsDir, name), name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &noSuchNetnsError{fmt.Sprintf("no network namespace named %q in %s: `ip netns list` shows the names there", name, netnsDir)}
	}
	return n, err
}

// OpenNetnsPath opens the network namespace behind path: /proc/PID/ns/net, a
// bind mount of one (docker's /run/docker/netns/ID, CNI's), or /run/netns/NAME.
// A missing file matches ErrNoSuchNamespace; a file that is not a network
// namespace is an error saying so.
func OpenNetnsPath(path string) (*Netns, error) {
	n, err := openNetns(path, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &noSuchNetnsError{fmt.Sprintf("no network namespace at %s: no such file", path)}
	}
	return n, err
}

// OpenNetnsPID opens the network namespace of process pid (/proc/PID/ns/net).
// A pid with no process matches ErrNoSuchNamespace.
func OpenNetnsPID(pid int) (*Netns, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: want a positive process ID", pid)
	}
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	n, err := openNetns(path, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &noSuchNetnsError{fmt.Sprintf("no process with pid %d: check the pid (ps -p %d)", pid, pid)}
	}
	return n, err
}

func openNetns(path, name string) (*Netns, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	// NS_GET_NSTYPE (Linux 4.11) tells a namespace from any other file, such as
	// a /run/netns file left behind without its mount.
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a network namespace: give a /run/netns name, /proc/PID/ns/net or a bind mount of one", path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	return &Netns{name: name, fd: netns.NsHandle(fd), id: st.Ino}, nil
}

// Name is what n was opened as: a /run/netns name or a path.
func (n *Netns) Name() string { return n.name }

// ID is the namespace's inode number, the N of net:[N] in /proc/PID/ns/net:
// two Netns with the same ID are the same namespace.
func (n *Netns) ID() uint64 { return n.id }

// Handle is n's descriptor, for calls that take a namespace (moving a link
// in, netlink.NsFd). It stays n's: valid until Close, never to be closed by
// the caller.
func (n *Netns) Handle() netns.NsHandle { return n.fd }

// Netlink returns a NETLINK_ROUTE handle whose socket lives in n (links,
// addresses, routes), opened on the first call. It stays n's: Close closes
// it. The handle is safe for concurrent use. Other families (NETLINK_NETFILTER)
// are a netlink call inside Run.
func (n *Netns) Netlink() (*netlink.Handle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl != nil {
		return n.nl, nil
	}
	var h *netlink.Handle
	err := n.Run(func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", n.name, err)
	}
	n.nl = h
	return h, nil
}

// Run runs fn on an OS thread switched into n and returns fn's error. Sockets
// fn creates stay in n for their whole life and may be used from any
// goroutine afterwards; goroutines fn starts run in the caller's namespace,
// not in n. fn runs on another goroutine, so it must not call t.Fatal.
func (n *Netns) Run(fn func() error) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.fd); err != nil {
			c <- fmt.Errorf("enter namespace %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread() // restored; otherwise the thread dies with us
		}
		c <- ferr
	}()
	return <-c
}

// Start starts cmd (cmd.Start) inside n, the way `ip netns exec` does: the
// child also gets a private mount namespace with sysfs mounted afresh, so
// /sys/class/net shows n's links. /proc/net follows the child's namespace by
// itself. The caller waits for cmd as usual.
//
// The child is forked from a throwaway thread. Since Linux sends
// SysProcAttr.Pdeathsig when the forking thread (not process) ends, Start
// keeps that thread alive until the child exits when Pdeathsig is set.
func (n *Netns) Start(cmd *exec.Cmd) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespaces stay changed
		if err := n.enter(); err != nil {
			c <- err
			return
		}
		if err := cmd.Start(); err != nil {
			c <- err
			return
		}
		c <- nil
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig != 0 {
			// Block until the child exits without reaping it; the caller's
			// Wait reaps it. ECHILD means Wait was first.
			var info unix.Siginfo
			for unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
			}
		}
	}()
	return <-c
}

// Exec replaces the current process with argv[0] (looked up in PATH) run
// inside n, with the environment of this process and n's /sys as Start gives
// it. It returns only on error. It is meant for `idlegate lab exec`.
func (n *Netns) Exec(argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec in namespace: no command given")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespaces stay changed
		if err := n.enter(); err != nil {
			c <- err
			return
		}
		// execve keeps only this thread, and with it this thread's namespaces.
		c <- fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
	}()
	return <-c
}

// enter switches the calling thread into n and into a private mount
// namespace in which /sys is a fresh sysfs for n. The thread cannot be
// restored afterwards: its cwd and root would differ from the other threads'
// if it set the mount namespace back.
func (n *Netns) enter() error {
	if err := netns.Set(n.fd); err != nil {
		return fmt.Errorf("enter namespace %s: %w", n.name, err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	// Keep our mounts from propagating back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount /sys: %w", err)
	}
	if err := unix.Mount(filepath.Base(n.name), "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs of namespace %s: %w", n.name, err)
	}
	return nil
}

// Close releases n's netlink handle and descriptor; the namespace itself goes
// only when nothing else holds it. Calls after the first return nil.
func (n *Netns) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.fd < 0 {
		return nil
	}
	return n.fd.Close() // sets n.fd to -1
}

// CreateNamespace creates the named network namespace /run/netns/name the way
// `ip netns add` does and returns it open; the caller closes it. First, under
// iproute2's lock on /run/netns, it makes /run/netns a shared mount point if
// it is not one yet (see netnsdir.go); then it creates the file, unshares a
// new network namespace on a throwaway thread and binds it to the file. If
// creation fails, what it made is removed; an existing name is an error and is
// left alone.
func CreateNamespace(name string) (*Netns, error) {
	if err := checkNetnsName(name); err != nil {
		return nil, err
	}
	unlock, _, err := lockNetnsDir(true)
	if err != nil {
		return nil, fmt.Errorf("create namespace %q: %w", name, err)
	}
	defer unlock()
	if err := shareNetnsDirLocked(); err != nil {
		return nil, fmt.Errorf("create namespace %q: %w", name, err)
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("create namespace %q: %w", name, err)
	}
	f.Close()
	if err := bindNewNetns(path); err != nil {
		return nil, errors.Join(fmt.Errorf("create namespace %q: %w", name, err), deleteLocked(path))
	}
	n, err := openNetns(path, name)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create namespace %q: %w", name, err), deleteLocked(path))
	}
	return n, nil
}

// bindNewNetns binds a new network namespace to path, from a thread that
// unshares it and is then left in it (and so dies with its goroutine).
func bindNewNetns(path string) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			c <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			c <- fmt.Errorf("bind %s to %s: %w", self, path, err)
			return
		}
		c <- nil
	}()
	return <-c
}

// DeleteNamespace unmounts and removes /run/netns/name, as `ip netns delete`
// does, under iproute2's lock on /run/netns. A missing namespace is not an
// error. The kernel frees the namespace once no process, descriptor or mount
// holds it; links in it (a TUN moved there) go with it.
//
// It also removes what `ip netns delete` cannot: mounts stacked on the file,
// and a mount hidden underneath a later self-bind of /run/netns (a namespace
// bound there before /run/netns was a mount point, see netnsdir.go), which it
// reaches by moving the self-bind aside for a moment. Where the kernel does
// not allow that, the error is one sentence saying what the user can do.
func DeleteNamespace(name string) error {
	if err := checkNetnsName(name); err != nil {
		return err
	}
	path := filepath.Join(netnsDir, name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, _, err := lockNetnsDir(false)
	if err != nil {
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	defer unlock()
	if err := deleteLocked(path); err != nil {
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	return nil
}

// NamespaceExists reports whether /run/netns/name exists (as a file, mounted
// or not).
func NamespaceExists(name string) bool {
	_, err := os.Lstat(filepath.Join(netnsDir, name))
	return err == nil
}

// checkNetnsName refuses what iproute2 refuses as a namespace name: empty,
// longer than NAME_MAX, with a '/', "." or "..".
func checkNetnsName(name string) error {
	if name == "" || len(name) > 255 || strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("network namespace name %q: want a file name for %s (no '/', not \".\" or \"..\")", name, netnsDir)
	}
	return nil
}

// noSuchNetnsError is ErrNoSuchNamespace in one sentence about one namespace.
type noSuchNetnsError struct{ msg string }

func (e *noSuchNetnsError) Error() string { return e.msg }
func (e *noSuchNetnsError) Unwrap() error { return ErrNoSuchNamespace }

// openLab opens a lab namespace: a missing one is ErrNoSuchLab, said about the
// lab it belongs to (name without its -client or -server suffix).
func openLab(name string) (*Netns, error) {
	n, err := OpenNetns(name)
	if errors.Is(err, ErrNoSuchNamespace) {
		labName := strings.TrimSuffix(strings.TrimSuffix(name, "-client"), "-server")
		return nil, fmt.Errorf("namespace %q: %w", name, NoSuchLab(labName))
	}
	return n, err
}

// Do is OpenNetns(namespace) and Run(fn), for the namespaces of a lab: a
// missing namespace is ErrNoSuchLab.
func Do(namespace string, fn func() error) error {
	n, err := openLab(namespace)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Run(fn)
}

// StartIn is OpenNetns(namespace) and Start(cmd), for the namespaces of a lab:
// a missing namespace is ErrNoSuchLab.
func StartIn(namespace string, cmd *exec.Cmd) error {
	n, err := openLab(namespace)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Start(cmd)
}

// ExecIn is OpenNetns(namespace) and Exec(argv), for the namespaces of a lab:
// a missing namespace is ErrNoSuchLab. It returns only on error.
func ExecIn(namespace string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec in namespace: no command given")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return err
	}
	n, err := openLab(namespace)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Exec(argv)
}
