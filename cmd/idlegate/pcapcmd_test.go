package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/lab"
)

// oneLine fails unless stderr is one line naming each of wants.
func oneLine(t *testing.T, r result, wants ...string) {
	t.Helper()
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") {
		t.Errorf("stderr %q: want one line", r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("stderr %q: want it to say %q", r.stderr, w)
		}
	}
}

// untouched fails unless path holds content with mode.
func untouched(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	fi, serr := os.Stat(path)
	if err != nil || serr != nil || string(b) != content || fi.Mode() != mode {
		t.Errorf("%s changed: %q, mode %v (%v, %v); want %q, mode %v", path, b, fi.Mode(), err, serr, content, mode)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestCLIPcapFiles: lab up --pcap and pcap start create a new file of mode 0600; a
// symbolic link (to a file of ours: it stays as it was) and an existing file without
// --force are refused with exit 2 and one sentence, and a refused lab up leaves no
// lab behind; pcap stop says what the file holds.
func TestCLIPcapFiles(t *testing.T) {
	needRoot(t)
	t.Parallel()
	dir := t.TempDir()
	const precious = "root's own data\n"
	target := filepath.Join(dir, "precious")
	if err := os.WriteFile(target, []byte(precious), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pcapng")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	const earlier = "an earlier recording\n"
	existing := filepath.Join(dir, "existing.pcapng")
	if err := os.WriteFile(existing, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	name := uniqueName("cli-")
	cleanupLab(t, name)

	for _, pcap := range []string{link, existing} {
		r := want(t, 2, "lab", "up", "--name", name, "--detach", "--pcap", pcap)
		if pcap == link {
			oneLine(t, r, link, "symbolic link")
		} else {
			oneLine(t, r, existing, "already exists", "--force")
		}
		if left := leftovers(t, name); len(left) > 0 {
			t.Fatalf("a refused lab up --pcap %s left %v behind", pcap, left)
		}
	}
	untouched(t, target, precious, 0o640)
	untouched(t, existing, earlier, 0o644)

	fresh := filepath.Join(dir, "fresh.pcapng")
	old := unix.Umask(0) // the file must be 0600 whatever the umask
	r := idlegate(t, "lab", "up", "--name", name, "--detach", "--pcap", fresh)
	unix.Umask(old)
	if r.code != 0 {
		t.Fatalf("lab up --pcap %s: %v", fresh, r)
	}
	if m := mode(t, fresh); m != 0o600 {
		t.Errorf("lab up --pcap made %s mode %v, want 0600", fresh, m)
	}
	if r := want(t, 0, "ct", "stats", "--name", name); !strings.Contains(r.stdout, "pcap:     recording to "+fresh) {
		t.Errorf("ct stats does not name the recording:\n%s", r.stdout)
	}

	for _, args := range [][]string{{link}, {"--force", link}} {
		r := want(t, 2, append([]string{"pcap", "start", "--name", name}, args...)...)
		oneLine(t, r, link, "symbolic link")
	}
	untouched(t, target, precious, 0o640)
	oneLine(t, want(t, 2, "pcap", "start", "--name", name, existing), existing, "already exists", "--force")
	untouched(t, existing, earlier, 0o644)
	oneLine(t, want(t, 2, "pcap", "start", "--name", name, fresh), fresh, "already exists")

	r = want(t, 0, "pcap", "start", "--name", name, "--force", existing)
	if !strings.Contains(r.stdout, "previous recording: "+fresh+" holds") || !strings.Contains(r.stdout, "recording to "+existing) {
		t.Errorf("pcap start --force over a recording:\n%s", r.stdout)
	}
	if m := mode(t, existing); m != 0o600 {
		t.Errorf("pcap start --force left %s mode %v, want 0600", existing, m)
	}
	r = want(t, 0, "pcap", "stop", "--name", name)
	if !strings.HasPrefix(r.stdout, "recording stopped: "+existing+" holds ") {
		t.Errorf("pcap stop: %q", r.stdout)
	}
	if b, _ := os.ReadFile(existing); strings.Contains(string(b), earlier) {
		t.Errorf("%s still holds the earlier recording after pcap start --force", existing)
	}
	if r := want(t, 0, "pcap", "stop", "--name", name); r.stdout != "no recording was running\n" {
		t.Errorf("second pcap stop: %q", r.stdout)
	}
	want(t, 0, "lab", "down", "--name", name)
}

// TestCLIPcapDiskFull: a recording into a 1 MiB tmpfs fills it while data crosses the
// lab; the gateway forwards on, ct stats stops saying it records and says why, and
// pcap stop exits 1 with what the file holds.
func TestCLIPcapDiskFull(t *testing.T) {
	needRoot(t)
	t.Parallel()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	name := uniqueName("cli-")
	cleanupLab(t, name) // registered after the unmount: runs before it, so the gateway lets go of the file first
	path := filepath.Join(dir, "run.pcapng")
	want(t, 0, "lab", "up", "--name", name, "--detach", "--pcap", path)

	c := echoConn(t, name)
	roundTrip := func(n int) {
		t.Helper()
		buf := make([]byte, n)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		errc := make(chan error, 1)
		go func() { _, err := c.Write(buf); errc <- err }()
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("echo of %d bytes: %v", n, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
	}
	roundTrip(3 << 20) // more than 6 MiB of packets into 1 MiB

	var st control.Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := want(t, 0, "ct", "stats", "--name", name, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("ct stats -o json: %v\n%s", err, r.stdout)
		}
		if st.Pcap == "" || time.Now().After(deadline) {
			break
		}
	}
	if st.Pcap != "" || st.PcapFailed == nil || st.PcapWriteErrors != 1 {
		t.Fatalf("after 3 MiB into a 1 MiB disk: recording %q, %d write errors, failed %+v", st.Pcap, st.PcapWriteErrors, st.PcapFailed)
	}
	roundTrip(64 << 10) // forwarding goes on

	stopped := fmt.Sprintf("recording stopped after a write error: write %s: no space left on device; %s holds %d packets up to ", path, path, st.PcapFailed.Packets)
	if r := want(t, 0, "ct", "stats", "--name", name); strings.Contains(r.stdout, "recording to") || !strings.Contains(r.stdout, "pcap:     "+stopped) {
		t.Errorf("ct stats after the disk filled:\n%s\nwant a line starting %q", r.stdout, "pcap:     "+stopped)
	}
	r := want(t, 1, "pcap", "stop", "--name", name)
	oneLine(t, r, "idlegate: "+stopped)
	want(t, 0, "lab", "down", "--name", name)
}

// echoConn dials, from lab name's client namespace, an echo server it starts in the
// server namespace; both end at cleanup.
func echoConn(t *testing.T, name string) net.Conn {
	t.Helper()
	var ln net.Listener
	if err := lab.Do(lab.ServerNamespace(name), func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	var c net.Conn
	if err := lab.Do(lab.ClientNamespace(name), func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}).Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("dial through the lab: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
