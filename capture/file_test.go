package capture

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// checkRefused: err is ErrRefused, one sentence naming path and containing the fix.
func checkRefused(t *testing.T, err error, path string, fix string) {
	t.Helper()
	if !errors.Is(err, ErrRefused) {
		t.Errorf("Create(%s) = %v, want ErrRefused", path, err)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, fix) || strings.Contains(msg, "\n") || strings.Contains(strings.TrimSuffix(msg, "."), ". ") {
		t.Errorf("Create(%s): %q; want one sentence naming the file and saying %q", path, msg, fix)
	}
}

func TestCreateMode(t *testing.T) {
	old := syscall.Umask(0) // a permissive umask must not widen the mode
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "run.pcapng")
	f, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != Mode {
		t.Errorf("a new capture has mode %v, want %v", fi.Mode(), os.FileMode(Mode))
	}
	b, _ := os.ReadFile(path)
	if _, err := pcapgo.NewNgReader(strings.NewReader(string(b)), pcapgo.DefaultNgReaderOptions); err != nil {
		t.Errorf("an empty recording does not open: %v", err)
	}
}

// TestCreateSymlink: a symbolic link to a file of ours is refused, with or without
// force, and the file it points to stays as it was; so does a dangling one, which
// must not create its target.
func TestCreateSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	const content = "root's own data\n"
	if err := os.WriteFile(target, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "run.pcapng")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pcapng")
	if err := os.Symlink(filepath.Join(dir, "made-through-link"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		_, err := Create(link, force)
		checkRefused(t, err, link, "symbolic link")
		_, err = Create(dangling, force)
		checkRefused(t, err, dangling, "symbolic link")
	}
	b, err := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if err != nil || string(b) != content || fi.Mode() != 0o640 {
		t.Errorf("the link's target changed: %q, mode %v, %v", b, fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "made-through-link")); err == nil {
		t.Error("a dangling link's target was created")
	}
}

// TestCreateExisting: an existing file is refused without force and left alone; with
// force it is overwritten and made 0600.
func TestCreateExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.pcapng")
	const content = "an earlier recording"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Create(path, false)
	checkRefused(t, err, path, "--force")
	if b, _ := os.ReadFile(path); string(b) != content {
		t.Fatalf("the refused file changed: %q", b)
	}
	f, err := Create(path, true)
	if err != nil {
		t.Fatalf("Create with force: %v", err)
	}
	f.Close()
	fi, _ := os.Stat(path)
	b, _ := os.ReadFile(path)
	if fi.Mode() != Mode || strings.Contains(string(b), content) {
		t.Errorf("overwritten with force: mode %v, still holds the old content %v", fi.Mode(), strings.Contains(string(b), content))
	}
}

// TestCreateOtherFiles: a directory, a named pipe (without blocking on it) and a file
// with another hard link are refused, force or not.
func TestCreateOtherFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "linked")
	if err := os.WriteFile(linked, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(linked, filepath.Join(dir, "other-name")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, force := range []bool{false, true} {
			_, err := Create(dir, force)
			checkRefused(t, err, dir, "directory")
			_, err = Create(fifo, force)
			checkRefused(t, err, fifo, "named pipe")
		}
		_, err := Create(linked, true)
		checkRefused(t, err, linked, "hard links")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Create blocked on a named pipe")
	}
	if b, _ := os.ReadFile(linked); string(b) != "x" {
		t.Errorf("the hard-linked file changed: %q", b)
	}
}

func TestCreateNoDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nosuch", "run.pcapng")
	_, err := Create(path, false)
	if err == nil || errors.Is(err, ErrRefused) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Create in a missing directory = %v", err)
	}
}

// TestFileFull: a recording that hits the file size limit mid-block (as a full disk
// would) stops, cuts the file back to its last whole block and says what it holds;
// the file then reads to its end with Reader and pcapgo.
func TestFileFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.pcapng")
	f, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	// Go ignores SIGXFSZ, so a write past RLIMIT_FSIZE is cut short and fails
	// with EFBIG. Only this test writes files while the limit holds.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	const limit = 300<<10 + 11
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skipf("cannot set RLIMIT_FSIZE: %v", err)
	}
	recs := sample(t, 4000)
	var werr error
	for _, r := range recs {
		if werr = f.Write(r.side, r.at, r.pkt, r.c); werr != nil {
			break
		}
	}
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	if !errors.Is(werr, syscall.EFBIG) {
		t.Fatalf("Write past the limit = %v, want EFBIG", werr)
	}
	if err := f.Flush(); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("Flush after the failure = %v, want the same error", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("Close after the failure = %v, want the same error", err)
	}
	st := f.Status()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != st.Bytes || st.Bytes >= limit || st.Packets == 0 {
		t.Fatalf("after the failure the file has %d bytes; Status %+v (limit %d)", fi.Size(), st, limit)
	}
	b, _ := os.ReadFile(path)
	if n := readAll(t, b, recs); n != st.Packets {
		t.Errorf("the cut file holds %d records, Status says %d", n, st.Packets)
	}
	if n, _ := readGopacket(t, b); n != st.Packets {
		t.Errorf("pcapgo reads %d packets, Status says %d", n, st.Packets)
	}
	if !st.Last.Equal(recs[st.Packets-1].at) {
		t.Errorf("Status.Last = %v, want %v", st.Last, recs[st.Packets-1].at)
	}
	if err := f.Write(0, t0, recs[0].pkt, Comment{}); err != nil {
		t.Errorf("Write after Close = %v, want nil (ignored)", err)
	}
}
