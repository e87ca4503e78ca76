package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The mount convention of /run/netns, as ip-netns(8) keeps it.
//
// `ip netns add` makes /run/netns a mount point of its own before it binds its
// first namespace there: a bind mount of the directory onto itself (MS_BIND|
// MS_REC), made shared (MS_SHARED|MS_REC), so that a namespace unmounted in one
// mount namespace is unmounted in all of them. A tool that binds a namespace
// into /run/netns while it is still a plain directory, as netns.NewNamed does,
// puts the mount on the parent filesystem; the next `ip netns add` copies it
// into the new self-bind and hides the original underneath. Unmounting the
// copy then leaves the original, and removing the file fails with EBUSY: the
// namespace stays, and so does its name in `ip netns list`.
//
// CreateNamespace therefore does what `ip netns add` does first, under the
// lock `ip netns add` takes (flock on /run/netns), and DeleteNamespace and
// RecoverHidden reach a hidden original where the kernel lets them.

// maxStacked bounds the unmounts of one path: more mounts stacked on one
// namespace file than this are a loop, not a state anyone made on purpose.
const maxStacked = 64

// lockNetnsDir takes iproute2's lock on /run/netns (the exclusive flock that
// `ip netns add` holds while it sets the directory's mount up), creating the
// directory first (mode 0755, as iproute2 does) if create is set. Without
// create and without the directory there is nothing to lock: unlock is a no-op
// and exists is false. iproute2 goes on without the lock when flock fails;
// here that is an error, since a half-made mount tree is worse than a refusal.
func lockNetnsDir(create bool) (unlock func(), exists bool, err error) {
	if create {
		if err := os.Mkdir(netnsDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("create %s: %w", netnsDir, err)
		}
	}
	fd, err := unix.Open(netnsDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT && !create {
		return func() {}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", netnsDir, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, false, fmt.Errorf("lock %s: %w", netnsDir, err)
	}
	return func() { unix.Close(fd) }, true, nil
}

// shareNetnsDirLocked makes /run/netns a shared mount point, as netns_add in
// iproute2's ip/ipnetns.c does: make it shared, recursively; if the kernel
// says EINVAL (not a mount point), bind it onto itself recursively, so that
// namespaces already bound there are copied into the new mount, and try once
// more. Newer iproute2 releases make the new mount private between the two
// steps so that it starts a peer group of its own; Debian's (6.1) does not,
// and neither does this: where /run is shared, a mount left underneath by a
// tool that bound it before the self-bind is then a peer of its visible copy
// and goes with it when the copy is unmounted. The caller holds lockNetnsDir.
func shareNetnsDirLocked() error {
	made := false
	for {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if err != unix.EINVAL || made {
			return fmt.Errorf("make %s a shared mount (mount --make-rshared %s): %w", netnsDir, netnsDir, err)
		}
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s onto itself (mount --rbind %s %s): %w", netnsDir, netnsDir, netnsDir, err)
		}
		made = true
	}
}

// deleteLocked unmounts path until it is no mount point and removes it, the
// way `ip netns delete` does (umount2 MNT_DETACH, unlink) but also for stacked
// mounts and for a mount hidden underneath the self-bind of /run/netns. A
// missing file is not an error. The caller holds lockNetnsDir.
func deleteLocked(path string) error {
	if err := unmountAll(path); err != nil {
		return err
	}
	err := unix.Unlink(path)
	if err == unix.EBUSY {
		// Still a mount point, in a mount that lookups of path no longer reach.
		if err := unhideLocked([]string{path}); err != nil {
			return err
		}
		err = unix.Unlink(path)
	}
	if err != nil && err != unix.ENOENT {
		return &fs.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}

// unmountAll detaches every mount that a lookup of path reaches, the top one
// first, until path is no mount point (EINVAL) or gone.
func unmountAll(path string) error {
	for range maxStacked {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err == unix.EINVAL || err == unix.ENOENT {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still a mount point after %d unmounts", path, maxStacked)
}

// RecoverHidden unmounts what of the named namespaces' mounts is hidden
// underneath a later bind mount of /run/netns onto itself (see the top of
// this file), leaving the mounts `ip netns list` sees, and the namespaces,
// as they are. It returns one sentence saying what it did, or "" when nothing
// was hidden. When the hidden mounts cannot be reached (the parent of
// /run/netns is a shared mount, so the kernel refuses to move the self-bind
// aside) the error is one sentence saying what the user can do. DeleteNamespace
// does the same on its own; RecoverHidden lets a caller say so before it
// deletes (idlegate lab down does).
func RecoverHidden(namespaces ...string) (string, error) {
	unlock, exists, err := lockNetnsDir(false)
	if err != nil || !exists {
		return "", err
	}
	defer unlock()
	var paths, names []string
	for _, ns := range namespaces {
		if err := checkNetnsName(ns); err != nil {
			return "", err
		}
		path := filepath.Join(netnsDir, ns)
		hidden, err := hiddenAt(path)
		if err != nil {
			return "", err
		}
		if len(hidden) > 0 {
			paths, names = append(paths, path), append(names, ns)
		}
	}
	if len(paths) == 0 {
		return "", nil
	}
	if err := unhideLocked(paths); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s had a second mount hidden under the bind mount that `ip netns add` put on %s after %s made; "+
		"idlegate moved %s aside for a moment, unmounted the hidden %s and put it back",
		andList(names), netnsDir, pick(len(names), "it was", "they were"), netnsDir, pick(len(names), "one", "ones")), nil
}

// unhideLocked unmounts the mounts at paths that lookups cannot reach because
// the self-bind of /run/netns covers the directory they were made in. It moves
// the self-bind to a temporary directory beside /run/netns (MS_MOVE), which
// makes them reachable, unmounts them, and moves the self-bind back: for that
// moment /run/netns shows the directory underneath, and the mounts `ip netns`
// made in the self-bind are not visible there. The kernel refuses the move when
// the parent mount of /run/netns is shared; then, and for any layout other than
// one self-bind over the directory, the error says what the user can do. The
// caller holds lockNetnsDir, which keeps other idlegate processes (and `ip
// netns add`'s own setup) out for that moment.
func unhideLocked(paths []string) error {
	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	var hidden []mountEntry
	for _, p := range paths {
		h, err := hiddenAtIn(mounts, p)
		if err != nil {
			return err
		}
		hidden = append(hidden, h...)
	}
	if len(hidden) == 0 {
		return fmt.Errorf("%s is busy, but no mount of it is hidden under %s: find what holds it in /proc/self/mountinfo", andList(paths), netnsDir)
	}
	dirID, err := mountID(netnsDir)
	if err != nil {
		return err
	}
	dir := mounts[dirID]
	parent, ok := mounts[dir.parent]
	movable := ok && dir.point == netnsDir && parent.peer == 0
	for _, h := range hidden {
		movable = movable && h.parent == dir.parent
	}
	if !movable {
		return &hiddenError{paths: paths, shared: ok && parent.peer != 0}
	}

	tmp, err := os.MkdirTemp(filepath.Dir(netnsDir), ".netns-idlegate-")
	if err != nil {
		return fmt.Errorf("reach the mounts hidden under %s: %w", netnsDir, err)
	}
	if err := unix.Mount(netnsDir, tmp, "", unix.MS_MOVE, ""); err != nil {
		os.Remove(tmp)
		if err == unix.EINVAL {
			return &hiddenError{paths: paths, shared: true}
		}
		return fmt.Errorf("move %s aside to reach the mounts hidden under it: %w", netnsDir, err)
	}
	var errs []error
	for _, p := range paths {
		errs = append(errs, unmountAll(p))
	}
	if err := unix.Mount(tmp, netnsDir, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("the bind mount of %s was moved to %s to reach the mounts hidden under it and could not be moved back (%v): run `mount --move %s %s` now",
			netnsDir, tmp, err, tmp, netnsDir)
	}
	os.Remove(tmp)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, p := range paths {
		if h, err := hiddenAt(p); err != nil || len(h) > 0 {
			return errors.Join(err, fmt.Errorf("%s is still mounted under %s after unmounting it", p, netnsDir))
		}
	}
	return nil
}

// hiddenError is the sentence for hidden mounts idlegate cannot reach.
type hiddenError struct {
	paths  []string
	shared bool // the parent mount of /run/netns is shared
}

func (e *hiddenError) Error() string {
	why := "the mounts over " + netnsDir + " are stacked in a way idlegate does not take apart"
	if e.shared {
		why = "the kernel does not move " + netnsDir + " aside while its parent mount is shared"
	}
	n := len(e.paths)
	return fmt.Sprintf("%s %s mounted underneath the bind mount that `ip netns add` put on %s after %s made, and %s: "+
		"%s its network namespace alive until reboot; to remove %s now, delete the other namespaces in `ip netns list`, "+
		"run `umount %s` and run this command again",
		andList(e.paths), pick(n, "stays", "stay"), netnsDir, pick(n, "it was", "they were"), why,
		pick(n, "it keeps", "each keeps"), pick(n, "it", "them"), netnsDir)
}

// mountEntry is one line of /proc/self/mountinfo (proc(5)).
type mountEntry struct {
	id, parent int
	point      string // the mount point, unescaped
	peer       int    // the peer group of a shared mount (shared:N), 0 if not shared
}

func readMountinfo() (map[int]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(b)
}

// parseMountinfo reads the lines of /proc/PID/mountinfo: ID, parent ID,
// major:minor, root, mount point, options, optional fields up to "-", ...
func parseMountinfo(b []byte) (map[int]mountEntry, error) {
	mounts := map[int]mountEntry{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 {
			return nil, fmt.Errorf("/proc/self/mountinfo: short line %q", sc.Text())
		}
		var m mountEntry
		var err1, err2 error
		m.id, err1 = strconv.Atoi(f[0])
		m.parent, err2 = strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/proc/self/mountinfo: bad line %q", sc.Text())
		}
		m.point = unescapeMountinfo(f[4])
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if v, ok := strings.CutPrefix(opt, "shared:"); ok {
				m.peer, _ = strconv.Atoi(v)
			}
		}
		mounts[m.id] = m
	}
	return mounts, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a path in
// mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountID is the ID (as in mountinfo) of the mount a lookup of path ends in:
// the top mount at path if it is a mount point, else the mount holding it.
func mountID(path string) (int, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: the kernel gives no mount ID (Linux 5.8 or later does)", path)
	}
	return int(stx.Mnt_id), nil
}

// hiddenAt returns the mounts at path that stay after unmounting path until
// it is no mount point (see hiddenAtIn). A missing path has none.
func hiddenAt(path string) ([]mountEntry, error) {
	mounts, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	return hiddenAtIn(mounts, path)
}

// hiddenAtIn returns the mounts at path that no lookup of path reaches (the
// reachable ones are the stack from the top mount at path down to the mount
// holding the file) and that no unmount of a reachable one removes by
// propagation (a mount at the same place under a peer of its parent).
func hiddenAtIn(mounts map[int]mountEntry, path string) ([]mountEntry, error) {
	top, err := mountID(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	reachable, peers := map[int]bool{}, map[int]bool{}
	for m, ok := mounts[top]; ok && m.point == path && !reachable[m.id]; m, ok = mounts[m.parent] {
		reachable[m.id] = true
		if p := mounts[m.parent]; p.peer != 0 {
			peers[p.peer] = true
		}
	}
	var hidden []mountEntry
	for _, m := range mounts {
		if m.point != path || reachable[m.id] {
			continue
		}
		if p, ok := mounts[m.parent]; ok && p.peer != 0 && peers[p.peer] {
			continue // unmounted with its peer's child
		}
		hidden = append(hidden, m)
	}
	slices.SortFunc(hidden, func(a, b mountEntry) int { return a.id - b.id })
	return hidden, nil
}

// andList joins names as "a", "a and b", "a, b and c".
func andList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
