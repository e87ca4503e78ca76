package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/policy"
)

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory and unmounts
// it at cleanup.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir() // removed after the unmount below: cleanups run last first
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestE2EPcapDiskFull: a recording into a 1 MiB tmpfs fills it while data crosses the
// lab. Forwarding goes on; the gateway logs one line, counts the error (stats and
// metric), stops recording (stats no longer name the file) and reports what the file
// holds on POST /v1/pcap; the file, cut back to its last whole block, reads to its
// end with capture.Reader, pcapgo and (if installed) tshark.
//
//	client netns --TUN-- gateway, --pcap DIR/run.pcapng --TUN-- server netns (echo)
//	                     DIR: tmpfs, size=1m
func TestE2EPcapDiskFull(t *testing.T) {
	needRoot(t)
	t.Parallel()
	dir := mountTmpfs(t, 1<<20)
	path := filepath.Join(dir, "run.pcapng")
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	run := startLabOpts(t, policy.Default(), gateway.LabOptions{Pcap: path, Log: log})

	srv := listenEcho(t, run, ipv4.server)
	c := mustDial(t, run, srv.addr, net.Dialer{})
	// 3 MiB echoed: more than 6 MiB of packets to record into 1 MiB.
	chunk := make([]byte, 64<<10)
	rand.Read(chunk)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	errc := make(chan error, 1)
	go func() {
		for range 48 {
			if _, err := c.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if _, err := io.CopyN(io.Discard, c, 48*int64(len(chunk))); err != nil {
		t.Fatalf("echo of 3 MiB while the recording fills its disk: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write 3 MiB: %v", err)
	}
	c.SetDeadline(time.Time{})

	// The recording stopped at the write that found the disk full (at the latest
	// at the next flush, within a second).
	deadline := time.Now().Add(5 * time.Second)
	for run.Gateway.PcapPath() != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if p := run.Gateway.PcapPath(); p != "" {
		t.Fatalf("the gateway still records to %s after 3 MiB into a 1 MiB disk", p)
	}

	// Forwarding goes on: the same connection and a new one.
	mustRoundTrip(t, c, "after the disk filled")
	mustRoundTrip(t, mustDial(t, run, srv.addr, net.Dialer{}), "a new connection")

	var st control.Stats
	api(t, run, "GET", "/v1/stats", nil, &st)
	f := st.PcapFailed
	if st.Pcap != "" || st.PcapWriteErrors != 1 || f == nil || f.Path != path || f.Packets == 0 ||
		!strings.Contains(f.Error, unix.ENOSPC.Error()) || f.Last.IsZero() {
		t.Fatalf("stats after the disk filled: pcap %q, %d write errors, failed %+v; want not recording, 1 error, ENOSPC with packets", st.Pcap, st.PcapWriteErrors, f)
	}
	if s := f.String(); !strings.HasPrefix(s, "recording stopped after a write error: ") || !strings.Contains(s, fmt.Sprintf("holds %d packets up to ", f.Packets)) {
		t.Errorf("the failure reads %q", s)
	}
	if m := metrics(t, run); !strings.Contains(m, "\nidlegate_pcap_write_errors_total 1\n") {
		t.Errorf("/metrics has no idlegate_pcap_write_errors_total 1:\n%s", m)
	}
	if lines := strings.Count(logBuf.String(), "write error"); lines != 1 {
		t.Errorf("the log has %d lines about the write error, want 1:\n%s", lines, logBuf.String())
	}

	// Stopping reports the failed recording.
	var ans control.PcapAnswer
	api(t, run, "POST", "/v1/pcap", map[string]string{"path": ""}, &ans)
	if e := ans.Ended; e == nil || e.Path != f.Path || e.Packets != f.Packets || e.Error != f.Error || !e.Last.Equal(f.Last) {
		t.Errorf("POST /v1/pcap to stop answered %+v, want the failed recording %+v", ans.Ended, f)
	}

	// The file reads to its end: as many records as reported, the last at the time
	// reported.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := capture.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("capture.NewReader: %v", err)
	}
	var rec capture.Record
	n, last := 0, time.Time{}
	for {
		err := rd.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("capture.Reader, record %d of %d bytes: %v", n+1, len(b), err)
		}
		n++
		last = rec.Time
	}
	if n != f.Packets || !last.Equal(f.Last) {
		t.Errorf("the file holds %d records up to %v; the gateway said %d up to %v", n, last, f.Packets, f.Last)
	}
	ng, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("pcapgo: %v", err)
	}
	for i := 0; ; i++ {
		if _, _, err := ng.ReadPacketData(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("pcapgo, packet %d: %v", i+1, err)
		}
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		out, err := exec.Command(tshark, "-r", path, "-q").CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("cut short")) {
			t.Errorf("tshark -r %s: %v\n%s", path, err, out)
		}
	} else {
		t.Log("tshark is not installed: the file is checked with capture.Reader and pcapgo only")
	}
}

// metrics is the gateway's /metrics page.
func metrics(t *testing.T, run *gateway.Running) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", run.Socket)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://lab/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
