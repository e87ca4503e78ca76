package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/policy"
)

// Mode is the permission of a file Create makes: every payload that crossed is in it.
const Mode = 0o600

// ErrRefused is matched (errors.Is) by Create's errors for a path it will not write
// through: a symbolic link, a file that is not regular, an existing file without
// force, or one with other hard links. Each reads as one sentence naming the fix.
var ErrRefused = errors.New("capture file refused")

type refusedError struct{ msg string }

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Is(target error) bool { return target == ErrRefused }

func refused(format string, a ...any) error { return &refusedError{fmt.Sprintf(format, a...)} }

// File is a recording to a file: a Writer on a file Create made. On the first failed
// write (a full disk, an I/O error) it cuts the file back to its last whole block, so
// that every reader opens it, and stops: Write and Flush return that error from then on
// and Status tells what the file holds. Safe for concurrent use.
type File struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	w      *Writer
	st     Status // once stopped or closed
	closed bool
}

// Create creates path for a recording, mode 0600, and writes the pcapng header. It
// never writes through a symbolic link (O_NOFOLLOW) and refuses a file that is not
// regular; an existing regular file is refused unless force, and then overwritten
// (made 0600 first) unless it has other hard links.
func Create(path string, force bool) (*File, error) {
	f, err := create(path, force)
	if err != nil {
		return nil, err
	}
	w, err := NewWriter(f, "idlegate")
	if err != nil {
		removeOpened(f, path)
		return nil, fmt.Errorf("write the pcapng header to %s: %w", path, err)
	}
	return &File{path: path, f: f, w: w}, nil
}

// create opens path for writing as Create describes.
func create(path string, force bool) (*os.File, error) {
	if force {
		// Look before opening: opening a FIFO or a device for writing can block, or act on it.
		if fi, err := os.Lstat(path); err == nil {
			if err := refuseExisting(path, fi, true); err != nil {
				return nil, err
			}
		}
	}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	if !force {
		flags |= unix.O_EXCL
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, flags, Mode)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if err == unix.EEXIST || err == unix.ELOOP || err == unix.EISDIR || err == unix.ENXIO {
			if fi, lerr := os.Lstat(path); lerr == nil {
				if r := refuseExisting(path, fi, force); r != nil {
					return nil, r
				}
			}
		}
		if err == unix.ENOENT {
			return nil, fmt.Errorf("cannot create %s: its directory %s does not exist (%w)", path, filepath.Dir(path), err)
		}
		return nil, fmt.Errorf("cannot create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("create %s: %w", path, err))
	}
	if err := refuseExisting(path, fi, true); err != nil { // swapped in since the Lstat
		return fail(err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(fmt.Errorf("create %s: %w", path, err))
	}
	if err := f.Chmod(Mode); err != nil {
		return fail(fmt.Errorf("create %s: %w", path, err))
	}
	if force {
		if err := f.Truncate(0); err != nil {
			return fail(fmt.Errorf("overwrite %s: %w", path, err))
		}
	}
	return f, nil
}

// refuseExisting says why path, an existing file described by fi, cannot be recorded
// to; nil if it can (a regular file with no other hard link, and force).
func refuseExisting(path string, fi fs.FileInfo, force bool) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return refused("%s is a symbolic link, and idlegate never records through one: give the path of a new file", path)
	case m.IsDir():
		return refused("%s is a directory: give the path of a new file in it, such as %s/run.pcapng", path, path)
	case !m.IsRegular():
		return refused("%s exists and is not a regular file (%s): give the path of a new file", path, typeName(m))
	case !force:
		return refused("%s already exists: give a new file name, remove it, or overwrite it with --force", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return refused("%s has %d hard links, and overwriting it would change the other names too: remove it or give a new file name", path, st.Nlink)
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// removeOpened closes f and removes path if it still names f.
func removeOpened(f *os.File, path string) {
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return
	}
	if li, err := os.Lstat(path); err == nil && os.SameFile(fi, li) {
		os.Remove(path)
	}
}

// Path is the file's path as given to Create.
func (f *File) Path() string { return f.path }

// Write records pkt, seen on side at t, with comment c. pkt is copied. It returns the
// error that stopped the recording, if any; after Close it does nothing.
func (f *File) Write(side policy.Side, t time.Time, pkt []byte, c Comment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if f.st.Err != nil {
		return f.st.Err
	}
	return f.checkLocked(f.w.Write(side, t, pkt, c))
}

// Flush writes buffered records to the file. It returns the error that stopped the
// recording, if any.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.st.Err
	}
	if f.st.Err != nil {
		return f.st.Err
	}
	return f.checkLocked(f.w.Flush())
}

// checkLocked stops the recording after the Writer's first write error: the file is
// cut back to its last whole block. f.mu is held.
func (f *File) checkLocked(err error) error {
	if err == nil || f.w.Status().Err == nil {
		return err // not a write to the file
	}
	f.st = f.w.Status()
	if terr := f.f.Truncate(f.st.Bytes); terr != nil {
		f.st.Err = fmt.Errorf("%w (and cutting the file back to its last whole block failed: %v)", f.st.Err, terr)
	}
	return f.st.Err
}

// Close flushes and closes the file; later writes do nothing. It returns the error
// that stopped the recording (now or earlier) or that closing met. Safe to call twice.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.st.Err
	}
	f.closed = true
	if f.st.Err == nil {
		f.checkLocked(f.w.Flush())
		if f.st.Err == nil {
			f.st = f.w.Status()
		}
	}
	if err := f.f.Close(); err != nil && f.st.Err == nil {
		f.st.Err = err
	}
	return f.st.Err
}

// Status says what the file holds: whole blocks written so far (buffered records are
// not counted until Flush or Close), and the error that stopped the recording.
func (f *File) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.st.Err != nil {
		return f.st
	}
	return f.w.Status()
}
