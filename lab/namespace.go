package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespaces live where ip-netns(8) keeps them, so `ip netns list` and
// `ip netns exec` see lab namespaces too.
const netnsDir = "/run/netns"

// Network namespaces belong to threads, not processes. Everything here that
// switches one does so on a goroutine of its own, locked to its OS thread. When
// the thread cannot be put back exactly as it was, the goroutine ends still
// locked, and the Go runtime then discards the thread instead of reusing it
// for other goroutines.

// CreateNamespace creates the named network namespace (/run/netns/name) and
// returns a handle on it; the caller closes the handle. If creation fails, any
// file left behind is removed. netns.NewNamed switches the calling thread into
// the new namespace and leaves it there, so it runs on a throwaway thread.
func CreateNamespace(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.NewNamed(name)
		c <- result{ns, err}
	}()
	r := <-c
	if r.err != nil {
		// NewNamed leaves the file behind when the bind mount fails.
		return netns.None(), errors.Join(fmt.Errorf("create namespace %q: %w", name, r.err), DeleteNamespace(name))
	}
	return r.ns, nil
}

// DeleteNamespace unmounts and removes /run/netns/name. A missing namespace is
// not an error. The kernel frees the namespace once no process, descriptor or
// mount holds it; links in it (a TUN moved there) go with it.
func DeleteNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	// EINVAL: not a mount point (a file NewNamed left behind); ENOENT: gone.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
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

// Do runs fn on an OS thread switched into the named network namespace and
// returns fn's error. Sockets fn creates stay in that namespace for their
// whole life and may be used from any goroutine afterwards; goroutines fn
// starts run in the caller's namespace, not in this one. fn runs on another
// goroutine, so it must not call t.Fatal. A missing namespace is ErrNoSuchLab.
func Do(namespace string, fn func() error) error {
	target, err := Namespace(namespace)
	if err != nil {
		return err
	}
	defer target.Close()
	c := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			c <- fmt.Errorf("enter namespace %q: %w", namespace, err)
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

// StartIn starts cmd (cmd.Start) inside the named network namespace, the way
// `ip netns exec` does: the child also gets a private mount namespace with
// sysfs mounted afresh, so /sys/class/net shows the namespace's links.
// /proc/net follows the child's namespace by itself. The caller waits for cmd
// as usual.
//
// The child is forked from a throwaway thread. Since Linux sends
// SysProcAttr.Pdeathsig when the forking thread (not process) ends, StartIn
// keeps that thread alive until the child exits when Pdeathsig is set.
func StartIn(namespace string, cmd *exec.Cmd) error {
	target, err := Namespace(namespace)
	if err != nil {
		return err
	}
	defer target.Close()
	c := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespaces stay changed
		if err := enter(namespace, target); err != nil {
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

// ExecIn replaces the current process with argv[0] (looked up in PATH) run
// inside the named network namespace, with the environment of this process
// and the /sys of that namespace as StartIn does. It returns only on error.
// It is meant for `idlegate lab exec`.
func ExecIn(namespace string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec in namespace: no command given")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	target, err := Namespace(namespace)
	if err != nil {
		return err
	}
	defer target.Close()
	c := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespaces stay changed
		if err := enter(namespace, target); err != nil {
			c <- err
			return
		}
		// execve keeps only this thread, and with it this thread's namespaces.
		c <- fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
	}()
	return <-c
}

// enter switches the calling thread into the network namespace target and
// into a private mount namespace in which /sys is a fresh sysfs for target.
// The thread cannot be restored afterwards: its cwd and root would differ from
// the other threads' if it set the mount namespace back.
func enter(name string, target netns.NsHandle) error {
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter namespace %q: %w", name, err)
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
	if err := unix.Mount(name, "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs of namespace %q: %w", name, err)
	}
	return nil
}
