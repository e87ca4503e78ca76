package fidelity

// TestDifferentialLinux: every case runs the same traffic through both sides at the
// same moment (topology in sides_test.go) and compares, per connection, the event
// sequences: NEW, UPDATE (a state change, the first reply, ASSURED) and DESTROY,
// with the TCP state and the [UNREPLIED] / [ASSURED] flags as conntrack -E prints
// them, and the time of each since the case began, within tolerance. Each case also
// states the sequence it exercises, which the kernel must show: two sides that agree
// on nothing happening prove nothing.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idlegate/idlegate/bench"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the differential test needs root and CI runs as root; a skip would hide it")
	}
	t.Skip("needs root for network namespaces")
}

func needCommand(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing: deps.sh installs %s", name, pkg)
	}
	t.Skipf("%s is missing: run bash deps.sh (Debian package %s)", name, pkg)
}

// timeouts are what both sides run with, in seconds: the router's nf_conntrack
// sysctls and the lab's policy keys. Short, so that each case ends within seconds,
// and apart, so that the time an entry dies tells which rule fired.
var timeouts = []struct {
	sysctl, key string
	secs        int
}{
	{"nf_conntrack_tcp_timeout_syn_sent", "timeouts.tcp.syn_sent", 2},
	{"nf_conntrack_tcp_timeout_syn_recv", "timeouts.tcp.syn_recv", 2},
	{"nf_conntrack_tcp_timeout_established", "timeouts.tcp.established", 12},
	{"nf_conntrack_tcp_timeout_fin_wait", "timeouts.tcp.fin_wait", 3},
	{"nf_conntrack_tcp_timeout_close_wait", "timeouts.tcp.close_wait", 3},
	{"nf_conntrack_tcp_timeout_last_ack", "timeouts.tcp.last_ack", 3},
	{"nf_conntrack_tcp_timeout_time_wait", "timeouts.tcp.time_wait", 3},
	{"nf_conntrack_tcp_timeout_close", "timeouts.tcp.close", 2},
	{"nf_conntrack_tcp_timeout_unacknowledged", "timeouts.tcp.unacknowledged", 6},
	{"nf_conntrack_tcp_timeout_max_retrans", "timeouts.tcp.max_retrans", 4},
	{"nf_conntrack_udp_timeout", "timeouts.udp", 3},
	{"nf_conntrack_udp_timeout_stream", "timeouts.udp_stream", 8},
	{"nf_conntrack_icmp_timeout", "timeouts.icmp", 3},
}

// kernelRuleset turns conntrack on in the router and drops nothing: Linux with no
// rule about invalid packets, the linux-conntrack profile's invalid: accept.
const kernelRuleset = `table inet fid {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter
	}
}
`

// tolerance bounds how far the time of a step may differ between the sides: the
// kernel's expiries are seen through a table dump every 100 ms, idlegate's sweep
// runs every 20-50 ms, and both sides' packets leave at the same moment.
const tolerance = 250 * time.Millisecond

// dcase is one case: its traffic, run once per side, its protocol and port (the
// server's port; the echo id for ICMP), how long events are still collected after
// the traffic ends, and the sequence it exercises (steps without times).
type dcase struct {
	name  string
	proto string
	port  uint16
	tail  time.Duration
	want  []string
	run   func(e *env)
}

// outcome is what one case saw on both sides.
type outcome struct {
	c              dcase
	kernel, engine []string
	err            string
}

func TestDifferentialLinux(t *testing.T) {
	needRoot(t)
	needCommand(t, "nft", "nftables")
	needCommand(t, "conntrack", "conntrack")
	start := time.Now()
	b := make([]byte, 2)
	rand.Read(b)
	id := hex.EncodeToString(b)

	sysctls := map[string]string{}
	pol, err := policy.ProfilePolicy("linux-conntrack")
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range timeouts {
		sysctls[to.sysctl] = strconv.Itoa(to.secs)
		if err := pol.Set(to.key, strconv.Itoa(to.secs)+"s"); err != nil {
			t.Fatal(err)
		}
	}
	k, err := bench.UpKernel(bench.KernelConfig{Prefix: "fidk" + id, Ruleset: kernelRuleset, Sysctls: sysctls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Down(); err != nil {
			t.Errorf("kernel topology down: %v", err)
		}
	})
	kern := &side{name: "kernel", client: k.Client, server: k.Server, rec: &recorder{}, forget: kernelForget(k.Router)}
	watchKernel(t, k.Router, kern.rec)

	base, err := os.MkdirTemp("", "fid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	name := "fidl" + id
	t.Cleanup(func() { lab.Cleanup(name, base) })
	run, err := gateway.StartLab(context.Background(), lab.Config{Name: name, RunBase: base}, pol, gateway.LabOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run.Stop(); err != nil {
			t.Errorf("lab stop: %v", err)
		}
	})
	idle := &side{name: "idlegate", client: run.Lab.Client.Namespace, server: run.Lab.Server.Namespace, rec: &recorder{},
		forget: engineForget(run.Engine, run.Gateway.Now)}
	watchEngine(t, run.Engine, idle.rec)
	for _, s := range []*side{kern, idle} {
		if err := clientSetup(s.client); err != nil {
			t.Fatal(err)
		}
		if err := hostSetup(s.server); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("setup %.1fs: kernel %s-{client,router,server}, lab %s (%s device)", time.Since(start).Seconds(), k.Router[:len(k.Router)-7], name, run.Lab.Device)

	cases := differentialCases()
	results := make([]outcome, len(cases))
	// Every case at once, each a subtest run from a goroutine of its own (t.Parallel
	// would run GOMAXPROCS of them at a time, and the suite is mostly waiting).
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(c.name, func(t *testing.T) { results[i] = runCase(t, c, kern, idle) })
		}()
	}
	wg.Wait()

	var tab strings.Builder
	fmt.Fprintf(&tab, "differential suite: %d cases, %.1fs wall\n", len(cases), time.Since(start).Seconds())
	for _, r := range results {
		mark := "same"
		if r.err != "" {
			mark = "DIFFERENT: " + r.err
		}
		fmt.Fprintf(&tab, "%-22s %s\n  kernel:   %s\n  idlegate: %s\n", r.c.name, mark, strings.Join(r.kernel, ", "), strings.Join(r.engine, ", "))
	}
	t.Log("\n" + tab.String())
	if path := os.Getenv("IDLEGATE_DIFF_REPORT"); path != "" {
		os.WriteFile(path, []byte(tab.String()), 0o644)
	}
}

// runCase runs c on both sides at once, waits for its tail, and compares.
func runCase(t *testing.T, c dcase, sides ...*side) outcome {
	var wg sync.WaitGroup
	starts := make([]time.Time, len(sides))
	for i, s := range sides {
		wg.Add(1)
		go func() {
			defer wg.Done()
			starts[i] = time.Now()
			t.Run(s.name, func(st *testing.T) { c.run(&env{T: st, s: s, port: c.port, later: t.Cleanup}) })
		}()
	}
	wg.Wait()
	time.Sleep(c.tail)
	evs := make([][]event, len(sides))
	for i, s := range sides {
		evs[i] = s.rec.of(c.proto, c.port, starts[i].Add(-time.Millisecond))
	}
	out := outcome{c: c}
	for _, e := range evs[0] {
		out.kernel = append(out.kernel, step(e, starts[0]))
	}
	for _, e := range evs[1] {
		out.engine = append(out.engine, step(e, starts[1]))
	}
	fail := func(format string, args ...any) {
		out.err = fmt.Sprintf(format, args...)
		t.Errorf("%s\n kernel:   %v\n idlegate: %v", out.err, out.kernel, out.engine)
	}
	switch {
	case !matches(evs[0], c.want):
		fail("the kernel's sequence is not the one the case exercises: want %v", c.want)
	case len(evs[0]) != len(evs[1]):
		fail("%d events on the kernel, %d on idlegate", len(evs[0]), len(evs[1]))
	default:
		for i := range evs[0] {
			k, e := evs[0][i], evs[1][i]
			dk, de := k.at.Sub(starts[0]), e.at.Sub(starts[1])
			if !same(k, e) {
				fail("step %d differs", i+1)
				break
			}
			if d := dk - de; d > tolerance || d < -tolerance {
				fail("step %d at %.2fs on the kernel, %.2fs on idlegate", i+1, dk.Seconds(), de.Seconds())
				break
			}
		}
	}
	return out
}

// matches reports whether the events are the wanted steps (without times).
func matches(evs []event, want []string) bool {
	if len(evs) != len(want) {
		return false
	}
	for i, e := range evs {
		s := step(e, e.at)
		if s[:strings.LastIndex(s, " @")] != want[i] {
			return false
		}
	}
	return true
}

// Steps, as step() prints them without the time.
const (
	newSYN    = "NEW SYN_SENT [UNREPLIED]"
	synRecv   = "UPDATE SYN_RECV"
	estAss    = "UPDATE ESTABLISHED [ASSURED]"
	finWait   = "UPDATE FIN_WAIT [ASSURED]"
	closeWait = "UPDATE CLOSE_WAIT [ASSURED]"
	lastAck   = "UPDATE LAST_ACK [ASSURED]"
	timeWait  = "UPDATE TIME_WAIT [ASSURED]"
	closeAss  = "UPDATE CLOSE [ASSURED]"
)

var handshake = []string{newSYN, synRecv, estAss}

func seqOf(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

const (
	fAck = packet.TCPAck
	fSyn = packet.TCPSyn
	fFin = packet.TCPFin
	fRst = packet.TCPRst
	fPsh = packet.TCPPsh
)

func differentialCases() []dcase {
	return []dcase{
		{name: "close-client-first", proto: "tcp", port: 7001, tail: 4 * time.Second,
			want: seqOf(handshake, finWait, closeWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(400 * time.Millisecond)) // the FIN's ACK goes alone
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				c.Close()
				time.Sleep(time.Second)
			}},
		{name: "close-server-first", proto: "tcp", port: 7002, tail: 4 * time.Second,
			want: seqOf(handshake, finWait, closeWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 2)
					c.Read(buf)
					c.Write(buf)
					c.Close()
				})
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				c.Read(make([]byte, 1)) // EOF
				time.Sleep(400 * time.Millisecond)
				c.Close()
				time.Sleep(time.Second)
			}},
		{name: "close-at-once", proto: "tcp", port: 7003, tail: 4 * time.Second,
			// The client's FIN carries the ACK of the server's: no CLOSE_WAIT.
			want: seqOf(handshake, finWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 2)
					c.Read(buf)
					c.Close()
				})
				r := e.raw(31003, 100000)
				r.handshake()
				r.send(fPsh|fAck, "hi")
				r.expect(fFin)
				r.send(fFin|fAck, "")
				r.expect(fAck)
				time.Sleep(time.Second)
			}},
		{name: "fins-cross", proto: "tcp", port: 7004, tail: 4 * time.Second,
			// The client's FIN does not acknowledge the server's, already sent.
			want: seqOf(handshake, finWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 2)
					c.Read(buf)
					c.Close()
				})
				r := e.raw(31004, 200000)
				r.handshake()
				r.send(fPsh|fAck, "hi")
				fin := r.expect(fFin)
				r.sendSeg(fFin|fAck, r.sndNxt, fin.seq, 1000, -1, nil) // acks the data, not the FIN
				r.sndNxt++
				r.expect(fAck)
				r.send(fAck, "")
				time.Sleep(time.Second)
			}},
		{name: "rst-closed-port", proto: "tcp", port: 7005, tail: time.Second,
			want: []string{newSYN, "DESTROY CLOSE [UNREPLIED]"},
			run: func(e *env) {
				if _, err := e.dial(0, nil); !errIs(err, syscall.ECONNREFUSED) {
					e.Fatalf("dial a closed port: %v", err)
				}
			}},
		{name: "rst-client", proto: "tcp", port: 7006, tail: 3 * time.Second,
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				time.Sleep(300 * time.Millisecond)
				reset(c)
			}},
		{name: "rst-server", proto: "tcp", port: 7007, tail: 3 * time.Second,
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 2)
					c.Read(buf)
					c.Write(buf)
					time.Sleep(300 * time.Millisecond)
					reset(c)
				})
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Read(make([]byte, 1)); !errIs(err, syscall.ECONNRESET) {
					e.Errorf("read after the server's RST: %v", err)
				}
			}},
		{name: "rst-in-close-wait", proto: "tcp", port: 7008, tail: 3 * time.Second,
			// In a closing state any RST closes.
			want: seqOf(handshake, finWait, closeWait, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 16)
					for {
						if _, err := c.Read(buf); err != nil {
							break
						}
					}
					time.Sleep(400 * time.Millisecond)
					reset(c)
				})
				c := e.mustDial(nil)
				c.Write([]byte("hi"))
				time.Sleep(100 * time.Millisecond)
				c.CloseWrite()
				time.Sleep(time.Second)
			}},
		{name: "rst-answers-synack", proto: "tcp", port: 7009, tail: 3 * time.Second,
			// The client's kernel, knowing no such connection, resets the SYN-ACK.
			want: []string{newSYN, synRecv, "UPDATE CLOSE", "DESTROY CLOSE"},
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(32009, 300000) // outside the raw range: the kernel's RST goes out
				r.sendSeg(fSyn, r.isn, 0, 64240, 7, nil)
				r.expect(fSyn | fAck)
				time.Sleep(500 * time.Millisecond)
			}},
		{name: "rst-inexact", proto: "tcp", port: 7010, tail: 8 * time.Second,
			// Inside the scaled window but not at rcv.nxt: ESTABLISHED stays (the
			// server answers with a challenge ACK), with CLOSE's timeout, then the
			// unacknowledged one (the RST moved the client's end past the server's ack).
			want: seqOf(handshake, "DESTROY ESTABLISHED [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(31010, 400000)
				r.handshake()
				r.send(fPsh|fAck, "hi")
				r.expect(fPsh)
				r.send(fAck, "")
				time.Sleep(300 * time.Millisecond)
				r.sendSeg(fRst, r.sndNxt+5000, 0, 0, -1, nil)
				r.expect(fAck) // the challenge ACK
			}},
		{name: "rst-out-of-window", proto: "tcp", port: 7011, tail: 3 * time.Second,
			// Far out of window: invalid, it passes untracked and changes nothing;
			// the exact one after it closes.
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(31011, 500000)
				r.handshake()
				time.Sleep(300 * time.Millisecond)
				r.sendSeg(fRst, r.sndNxt+10<<20, 0, 0, -1, nil)
				time.Sleep(300 * time.Millisecond)
				r.sendSeg(fRst, r.sndNxt, 0, 0, -1, nil)
			}},
		{name: "rst-after-data", proto: "tcp", port: 7012, tail: 3 * time.Second,
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					buf := make([]byte, 2)
					c.Read(buf)
					c.Write(make([]byte, 20000))
					reset(c) // the RST follows the data before its ACK can
				})
				c := e.mustDial(nil)
				c.Write([]byte("go"))
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 65536)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
			}},
		{name: "half-close", proto: "tcp", port: 7013, tail: 4 * time.Second,
			want: seqOf(handshake, finWait, closeWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]"),
			run: func(e *env) {
				e.listen(func(c *net.TCPConn) {
					c.Read(make([]byte, 1)) // EOF: the client's half-close
					for range 3 {
						time.Sleep(300 * time.Millisecond)
						c.Write([]byte("more"))
					}
					c.Close()
				})
				c := e.mustDial(nil)
				c.CloseWrite()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				time.Sleep(400 * time.Millisecond)
				c.Close()
				time.Sleep(500 * time.Millisecond)
			}},
		{name: "idle-below-timeout", proto: "tcp", port: 7014, tail: 3 * time.Second,
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				time.Sleep(9 * time.Second) // ESTABLISHED is 12 s
				roundTrip(e.T, c, "still here")
				time.Sleep(300 * time.Millisecond)
				reset(c)
			}},
		{name: "idle-above-timeout", proto: "tcp", port: 7015, tail: 3 * time.Second,
			// Expired at 12 s; the next segment is picked up (nf_conntrack_tcp_loose),
			// its answer marks it replied, the segment after it assures it.
			want: seqOf(handshake, "DESTROY ESTABLISHED [ASSURED]", "NEW ESTABLISHED [UNREPLIED]", "UPDATE",
				"UPDATE [ASSURED]", closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				time.Sleep(14 * time.Second)
				roundTrip(e.T, c, "back")
				time.Sleep(300 * time.Millisecond)
				reset(c)
			}},
		{name: "idle-with-keepalive", proto: "tcp", port: 7016, tail: 3 * time.Second,
			want: seqOf(handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				c := e.mustDial(&net.KeepAliveConfig{Enable: true, Idle: 4 * time.Second, Interval: 4 * time.Second, Count: 3})
				roundTrip(e.T, c, "hi")
				time.Sleep(17 * time.Second) // probes at 4, 8, 12, 16 s keep it
				roundTrip(e.T, c, "still here")
				time.Sleep(300 * time.Millisecond)
				reset(c)
			}},
		{name: "time-wait-reuse", proto: "tcp", port: 7017, tail: 3 * time.Second,
			// A SYN on the TIME_WAIT entry replaces it.
			want: seqOf(handshake, finWait, closeWait, lastAck, timeWait, "DESTROY TIME_WAIT [ASSURED]",
				handshake, closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(400 * time.Millisecond))
				r := e.raw(31017, 600000)
				r.handshake()
				r.send(fFin|fAck, "")
				r.expect(fAck)
				r.expect(fFin)
				r.send(fAck, "")
				time.Sleep(time.Second)
				r2 := e.raw(31017, r.sndNxt+100000)
				r.ip.Close()
				r2.handshake()
				time.Sleep(300 * time.Millisecond)
				r2.sendSeg(fRst, r2.sndNxt, 0, 0, -1, nil)
			}},
		{name: "udp-one-way", proto: "udp", port: 7018, tail: 4 * time.Second,
			want: []string{"NEW [UNREPLIED]", "DESTROY [UNREPLIED]"},
			run: func(e *env) {
				e.udpServer(false)
				e.udpClient(0).Write([]byte("hello"))
			}},
		{name: "udp-request-answer", proto: "udp", port: 7019, tail: 4 * time.Second,
			// Answered once within 2 s: the unreplied timeout (3 s), not the stream one.
			want: []string{"NEW [UNREPLIED]", "UPDATE", "DESTROY"},
			run: func(e *env) {
				e.udpServer(true)
				c := e.udpClient(0)
				c.Write([]byte("query"))
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Read(make([]byte, 64)); err != nil {
					e.Fatalf("no answer: %v", err)
				}
			}},
		{name: "udp-stream", proto: "udp", port: 7020, tail: 9 * time.Second,
			// Still active 2 s after it opened: ASSURED, the stream timeout (8 s).
			want: []string{"NEW [UNREPLIED]", "UPDATE", "UPDATE [ASSURED]", "DESTROY [ASSURED]"},
			run: func(e *env) {
				e.udpServer(true)
				c := e.udpClient(0)
				for range 6 { // at 0, 0.7, ... 3.5 s: the one at 2.1 s is clear of the 2 s line
					c.Write([]byte("tick"))
					time.Sleep(700 * time.Millisecond)
				}
			}},
		{name: "icmp-echo", proto: "icmp", port: 7021, tail: 4 * time.Second,
			// ICMP is never assured.
			want: []string{"NEW [UNREPLIED]", "UPDATE", "DESTROY"},
			run: func(e *env) {
				e.ping()
			}},
		{name: "silent-server", proto: "tcp", port: 7022, tail: time.Second,
			// SYNs at 0, 1 and 3 s (clientSetup): the one at 1 s is neither answered
			// nor refreshing, the entry dies at 2 s; the one at 3 s opens another.
			want: []string{newSYN, "DESTROY SYN_SENT [UNREPLIED]", newSYN, "DESTROY SYN_SENT [UNREPLIED]"},
			run: func(e *env) {
				if err := e.blackhole(); err != nil {
					e.Fatal(err)
				}
				d := net.Dialer{Timeout: 5500 * time.Millisecond, KeepAlive: -1}
				lab.Do(e.s.client, func() error {
					_, err := d.Dial("tcp4", netip.AddrPortFrom(serverAddr, e.port).String())
					return err
				})
			}},
		{name: "unanswered-synack", proto: "tcp", port: 7023, tail: 2 * time.Second,
			// SYN_RECV dies at 2 s; the retransmitted SYN-ACKs can open nothing.
			want: []string{newSYN, synRecv, "DESTROY SYN_RECV"},
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(31023, 700000)
				r.sendSeg(fSyn, r.isn, 0, 64240, 7, nil)
				r.expect(fSyn | fAck)
				time.Sleep(3500 * time.Millisecond)
			}},
		{name: "mid-stream-pickup", proto: "tcp", port: 7024, tail: 3 * time.Second,
			want: seqOf(handshake, "DESTROY ESTABLISHED [ASSURED]", "NEW ESTABLISHED [UNREPLIED]", "UPDATE",
				"UPDATE [ASSURED]", closeAss, "DESTROY CLOSE [ASSURED]"),
			run: func(e *env) {
				e.listen(echo(0))
				c := e.mustDial(nil)
				roundTrip(e.T, c, "hi")
				time.Sleep(300 * time.Millisecond)
				if err := e.s.forget(e.port); err != nil {
					e.Fatal(err)
				}
				time.Sleep(300 * time.Millisecond)
				roundTrip(e.T, c, "picked up")
				roundTrip(e.T, c, "again")
				time.Sleep(300 * time.Millisecond)
				reset(c)
			}},
		{name: "dead-server", proto: "tcp", port: 7025, tail: time.Second,
			// Unacknowledged data (6 s), then max_retrans (4 s) after three
			// retransmissions: the entry dies between two of them; the next one is
			// picked up, never answered, and the RST that ends it deletes it at once.
			// The retransmissions are Linux's (RTO 200 ms, doubling) sent by the raw
			// client at fixed times: a kernel socket's own would follow each path's
			// round-trip time, and the two sides would not see the same traffic.
			want: seqOf(handshake, "DESTROY ESTABLISHED [ASSURED]", "NEW ESTABLISHED [UNREPLIED]", "DESTROY CLOSE [UNREPLIED]"),
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(31025, 900000)
				r.handshake()
				r.send(fPsh|fAck, "hi")
				r.expect(fPsh)
				r.send(fAck, "")
				time.Sleep(300 * time.Millisecond)
				if err := e.blackhole(); err != nil {
					e.Fatal(err)
				}
				start := time.Now()
				seq := r.sndNxt
				for _, at := range []time.Duration{0, 200, 600, 1400, 3000, 6200, 12600} {
					time.Sleep(time.Until(start.Add(at * time.Millisecond)))
					r.sendSeg(fPsh|fAck, seq, r.rcvNxt, 1000, -1, []byte("anyone there?"))
				}
				time.Sleep(time.Until(start.Add(16 * time.Second)))
				r.sendSeg(fRst, seq+13, 0, 0, -1, nil)
			}},
		{name: "ttl-expired", proto: "udp", port: 7026, tail: time.Second,
			// ip_forward drops it after conntrack: no entry is confirmed, nothing is
			// reported; the router answers with time exceeded.
			want: nil,
			run: func(e *env) {
				e.udpServer(true)
				icmp := e.icmpConn()
				e.udpClient(1).Write([]byte("probe"))
				icmp.SetReadDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 1500)
				for {
					n, from, err := icmp.ReadFrom(buf)
					if err != nil {
						e.Fatalf("%s: no time exceeded: %v", e.s.name, err)
					}
					if n >= 8 && buf[0] == 11 {
						if got := netip.MustParseAddr(from.String()); got != routerAddr {
							e.Errorf("%s: time exceeded from %v, want %v", e.s.name, got, routerAddr)
						}
						return
					}
				}
			}},
		{name: "syn-fin", proto: "tcp", port: 7027, tail: time.Second,
			// tcp_error: an invalid flag combination; it passes untracked, opens nothing.
			want: nil,
			run: func(e *env) {
				e.listen(echo(0))
				r := e.raw(31027, 800000)
				r.sendSeg(fSyn|fFin, r.isn, 0, 64240, 7, nil)
				time.Sleep(300 * time.Millisecond)
			}},
	}
}
