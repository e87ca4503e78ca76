package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where ip-netns(8) keeps named namespaces; lab uses it too, so
// lab.Do and lab.StartIn work on the kernel topology's namespaces as well.
const netnsDir = "/run/netns"

// newNamespace creates the named network namespace and returns a handle on it;
// the caller closes the handle. netns.NewNamed leaves the calling thread in the
// new namespace, so it runs on a locked goroutine whose thread dies with it.
func newNamespace(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		ns, err := netns.NewNamed(name)
		c <- result{ns, err}
	}()
	r := <-c
	if r.err != nil {
		return netns.None(), errors.Join(fmt.Errorf("create namespace %q: %w", name, r.err), deleteNamespace(name))
	}
	return r.ns, nil
}

// deleteNamespace unmounts and removes /run/netns/name; a missing one is not an
// error. The kernel frees the namespace, and the links in it, once no process or
// descriptor holds it.
func deleteNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %q: %w", name, err)
	}
	return nil
}

func namespaceExists(name string) bool {
	_, err := os.Lstat(filepath.Join(netnsDir, name))
	return err == nil
}
