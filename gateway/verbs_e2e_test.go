package gateway_test

// The operator's verbs against a live lab, through the control package's client:
//
//	  client netns                 gateway                      server netns
//	 [ test's dialer ] --TCP--> [ engine + API ] --TCP--> [ test's listener ]
//	                                   ^
//	                        control.Client on the unix socket:
//	                        Delete / Expire / SetTimeout by filter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// flowOf is the filter that picks the connection the client opened from local.
func flowOf(local netip.AddrPort) control.Filter {
	return control.Filter{Proto: conntrack.ProtoTCP, Src: netip.PrefixFrom(local.Addr(), local.Addr().BitLen()), SPort: local.Port()}
}

// acceptOne accepts one connection in the server namespace and reports the error
// that ends its reading.
type acceptOne struct {
	addr  netip.AddrPort
	ended chan error
}

func listenOne(t *testing.T, run *gateway.Running) *acceptOne {
	t.Helper()
	var ln net.Listener
	if err := lab.Do(run.Lab.Server.Namespace, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a := &acceptOne{addr: unmap(ln.Addr().(*net.TCPAddr).AddrPort()), ended: make(chan error, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			a.ended <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			if err != nil {
				a.ended <- err
				return
			}
			c.Write(buf[:n])
		}
	}()
	return a
}

// TestE2EDeleteMakesOrphan: ct delete forgets one connection: the next packet of it
// is an orphan (RST under orphan: reset), while another connection goes on.
func TestE2EDeleteMakesOrphan(t *testing.T) {
	t.Parallel()
	run := startLab(t, strictPolicy(time.Hour, policy.OrphanReset))
	srv := listenEcho(t, run, ipv4.server)
	doomed := mustDial(t, run, srv.addr, net.Dialer{})
	kept := mustDial(t, run, srv.addr, net.Dialer{})
	mustRoundTrip(t, doomed, "hello")
	mustRoundTrip(t, kept, "hello")
	cl := control.New(run.Socket)
	n, err := cl.Delete(context.Background(), flowOf(localAddr(doomed)))
	if err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1", n, err)
	}
	if _, ok := entryOf(run, localAddr(doomed)); ok {
		t.Fatal("the deleted connection is still in the table")
	}
	err, _ = writeThenRead(doomed, "anyone?", 5*time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after delete, the next write got %v, want ECONNRESET (an orphan under orphan: reset)", err)
	}
	mustRoundTrip(t, kept, "still here")
	st, err := cl.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Table.Destroyed["deleted"] != 1 || st.Reasons["orphan"] == 0 {
		t.Errorf("stats: destroyed %v, orphans %d; want 1 deleted and an orphan", st.Table.Destroyed, st.Reasons["orphan"])
	}
}

// TestE2EExpireSameAsIdle: under reset_on_expire, ct expire ends a connection exactly
// as its idle timeout ends another: DESTROY reason expired, and a RST to each end
// that both kernels accept (both reads fail with ECONNRESET), recorded as
// expiry-reset.
func TestE2EExpireSameAsIdle(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	pol := strictPolicy(timeout, policy.OrphanDrop)
	pol.ResetOnExpire = true
	run := startLab(t, pol)
	cl := control.New(run.Socket)
	evs, err := cl.Events(context.Background(), control.Filter{Events: []conntrack.EventType{conntrack.EventDestroy}})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()

	type flow struct {
		c   *net.TCPConn
		srv *acceptOne
	}
	open := func() flow {
		srv := listenOne(t, run)
		c := mustDial(t, run, srv.addr, net.Dialer{})
		mustRoundTrip(t, c, "hello")
		return flow{c, srv}
	}
	idle, fast := open(), open()
	start := time.Now()
	n, err := cl.Expire(context.Background(), flowOf(localAddr(fast.c)))
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1", n, err)
	}
	for name, f := range map[string]flow{"expired by ct expire": fast, "expired idle": idle} {
		f.c.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
		_, err := f.c.Read(make([]byte, 16))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: the client's read got %v, want ECONNRESET", name, err)
		}
		select {
		case err := <-f.srv.ended:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s: the server's read got %v, want ECONNRESET", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the server got no RST", name)
		}
	}
	if since := time.Since(start); since < timeout-500*time.Millisecond {
		t.Errorf("the idle connection ended after %v, before its %v timeout", since, timeout)
	}
	for range 2 {
		ev, err := evs.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "DESTROY" || ev.Reason != "expired" || ev.Idle < ev.Timeout {
			t.Errorf("event %+v: want DESTROY reason expired with idle >= timeout", ev)
		}
	}
	// Both ends of both connections got their RST from the expiry path.
	path := run.Gateway.PcapPath()
	if _, err := cl.StopPcap(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := capture.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	resets := 0
	for {
		var rec capture.Record
		if err := rd.Next(&rec); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == capture.ExpiryReset {
			resets++
		}
	}
	if resets != 4 {
		t.Errorf("the recording holds %d expiry-reset RSTs, want 4 (two ends of two connections)", resets)
	}
}

// TestE2EUpdateTimeout: ct update --timeout changes a connection's time left, both
// ways; a short one then ends as an idle timeout does.
func TestE2EUpdateTimeout(t *testing.T) {
	t.Parallel()
	run := startLab(t, strictPolicy(10*time.Second, policy.OrphanDrop))
	srv := listenEcho(t, run, ipv4.server)
	short := mustDial(t, run, srv.addr, net.Dialer{})
	long := mustDial(t, run, srv.addr, net.Dialer{})
	mustRoundTrip(t, short, "a")
	mustRoundTrip(t, long, "b")
	cl := control.New(run.Socket)
	ctx := context.Background()
	if n, err := cl.SetTimeout(ctx, flowOf(localAddr(short)), time.Second); err != nil || n != 1 {
		t.Fatalf("SetTimeout 1s = %d, %v", n, err)
	}
	if n, err := cl.SetTimeout(ctx, flowOf(localAddr(long)), time.Hour); err != nil || n != 1 {
		t.Fatalf("SetTimeout 1h = %d, %v", n, err)
	}
	rows, err := cl.Conns(ctx, control.Filter{Proto: conntrack.ProtoTCP})
	if err != nil {
		t.Fatal(err)
	}
	left := map[uint16]float64{}
	for _, r := range rows {
		left[r.Orig.SrcPort] = r.TimeLeft
	}
	if l := left[localAddr(short).Port()]; l <= 0 || l > 1 {
		t.Errorf("after update 1s: %.3fs left, want at most 1s", l)
	}
	if l := left[localAddr(long).Port()]; l < 3590 {
		t.Errorf("after update 1h: %.3fs left, want about 3600s (past the 10s timeout)", l)
	}
	waitForgotten(t, run, localAddr(short), 3*time.Second)
	if _, ok := entryOf(run, localAddr(long)); !ok {
		t.Error("the connection given an hour is gone")
	}
	// The listing leaves a due entry out at once; the sweep reports it within 100 ms.
	var n uint64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = run.Engine.Stats().Table.Destroyed[conntrack.ReasonExpired]; n > 0 {
			break
		}
	}
	if n != 1 {
		t.Errorf("%d connections expired, want the updated one", n)
	}
}

// TestE2EMetricsOverTCP: lab up --metrics serves GET /metrics over TCP for a stock
// Prometheus, and only that: the control API stays on the unix socket.
func TestE2EMetricsOverTCP(t *testing.T) {
	t.Parallel()
	run := startLabOpts(t, policy.Default(), gateway.LabOptions{Metrics: "127.0.0.1:0"})
	if run.Metrics == "" {
		t.Fatal("Running.Metrics is empty with LabOptions.Metrics set")
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + run.Metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "idlegate_build_info{") || !strings.Contains(string(body), "idlegate_conntrack_capacity 262144") {
		t.Errorf("scrape: %s\n%s", resp.Status, body)
	}
	resp, err = hc.Get("http://" + run.Metrics + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 404 || e.Error == "" {
		t.Errorf("GET /v1/stats over TCP: %s %q, want a JSON 404: the control API is not on TCP", resp.Status, e.Error)
	}
	l, err := control.New(run.Socket).Lab(context.Background())
	if err != nil || l.Metrics != run.Metrics {
		t.Errorf("GET /v1/lab metrics %q, %v; want %s", l.Metrics, err, run.Metrics)
	}
}
