package agent

import (
	"bufio"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTCPEcho(t *testing.T) {
	t.Parallel()
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", hostPort(host))
			out, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--conns", "3", "--name", "client-1",
				"--pattern", "send:hello,write:x,idle:50ms,send:y,hold:100ms")
			if len(res) != 3 {
				t.Fatalf("results %v, want c1..c3", res)
			}
			for _, c := range []string{"c1", "c2", "c3"} {
				r := res[c]
				if r.Outcome != "survived" || r.N == nil || *r.N != 2 || r.Agent != "client-1" {
					t.Errorf("%s result %+v, want survived n=2 by client-1", c, r)
				}
				if cl := out.filter("close", c); len(cl) != 1 || cl[0].Detail != "client done" {
					t.Errorf("%s close %+v, want one `client done`", c, cl)
				}
				if ids := out.filter("idle", c); len(ids) != 2 || ids[0].Detail != "50ms" || ids[1].Detail != "100ms" {
					t.Errorf("%s idle events %+v", c, ids)
				}
			}
			if len(out.filter("keepalive", "*")) != 0 {
				t.Errorf("keepalive event without keepalive flags")
			}
			srv.out.waitFor("close", 3, 2*time.Second)
			srv.stop()
			if n := len(srv.out.filter("accept", "*")); n != 3 {
				t.Errorf("server accepted %d, want 3", n)
			}
			if d := srv.out.details("close"); strings.Join(d, ",") != "eof,eof,eof" {
				t.Errorf("server closes %v, want 3 eof", d)
			}
		})
	}
}

func TestTCPEchoServerIdleClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0", "--idle-close", "200ms")
	start := time.Now()
	out, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--pattern", "send:a,hold:5s")
	if r := res["c1"]; r.Outcome != "closed" || r.Err != "EOF" {
		t.Errorf("result %+v, want closed", r)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("hold ended after %v, want about 200ms", el)
	}
	if d := out.details("close"); len(d) != 1 || d[0] != "eof" {
		t.Errorf("client close %v", d)
	}
	srv.out.waitFor("close", 1, time.Second)
	if d := srv.out.details("close"); d[0] != "server idle timeout" {
		t.Errorf("server close %v, want server idle timeout", d)
	}
}

func TestTCPEchoServerShutdown(t *testing.T) {
	t.Parallel()
	srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
	done := make(chan map[string]docEvent)
	go func() {
		_, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--pattern", "send:a,hold:5s")
		done <- res
	}()
	srv.out.waitFor("recv", 1, 2*time.Second)
	srv.stop()
	if d := srv.out.details("close"); len(d) != 1 || d[0] != "shutdown" {
		t.Errorf("server close %v, want shutdown", d)
	}
	if r := (<-done)["c1"]; r.Outcome != "closed" {
		t.Errorf("client result %+v, want closed", r)
	}
}

// resetServer echoes the first line, then aborts the connection with SO_LINGER 0 (a RST)
// after delay.
func resetServer(t *testing.T, delay time.Duration) string {
	return rawServer(t, listenLoopback(t), func(_ int, c *net.TCPConn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		c.Write([]byte(line))
		time.Sleep(delay)
		c.SetLinger(0)
	})
}

func TestTCPClientReset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern string
		ops           []string
	}{
		// The RST arrives during the idle period; the next operation fails.
		{"next send after idle", "send:a,idle:300ms,send:b", []string{"write", "read"}},
		// A read blocked in hold sees the RST at once.
		{"hold", "send:a,hold:5s", []string{"read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := resetServer(t, 100*time.Millisecond)
			out, res := runClient(t, TCPClient, "tcp-client", "--connect", addr, "--pattern", tt.pattern)
			r := res["c1"]
			if r.Outcome != "reset" || (r.Err != "ECONNRESET" && r.Err != "EPIPE") || !contains(tt.ops, r.Op) {
				t.Errorf("result %+v, want reset by ECONNRESET in %v", r, tt.ops)
			}
			if errs := out.filter("error", "c1"); len(errs) != 1 || errs[0].Err != r.Err {
				t.Errorf("errors %+v, want one %s", errs, r.Err)
			}
			if d := out.details("close"); len(d) != 1 || !strings.HasPrefix(d[0], "error E") {
				t.Errorf("close %v", d)
			}
		})
	}
}

// TestTCPClientUserTimeout shows TCP_USER_TIMEOUT ending a connection with ETIMEDOUT on
// loopback, where nothing can be blackholed without a namespace, in the two cases the kernel
// applies it without a silent peer: data that stays untransmitted behind a zero window (the
// server never reads), and a SYN dropped because the listener's accept queue is full. The
// established connection whose segments vanish is the runner's end-to-end scenario.
func TestTCPClientUserTimeout(t *testing.T) {
	t.Parallel()
	t.Run("zero window", func(t *testing.T) {
		t.Parallel()
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 2048) })
		}}
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		addr := rawServer(t, ln, func(_ int, c *net.TCPConn) { <-stop }) // never reads
		t.Cleanup(func() { close(stop) })
		big := strings.Repeat("x", 4<<20)
		start := time.Now()
		_, res := runClient(t, TCPClient, "tcp-client", "--connect", addr, "--user-timeout", "500ms",
			"--pattern", "write:"+big+",hold:8s")
		if r := res["c1"]; r.Outcome != "timed-out" || r.Err != "ETIMEDOUT" {
			t.Errorf("result %+v, want timed-out by ETIMEDOUT", r)
		}
		if el := time.Since(start); el > 4*time.Second {
			t.Errorf("ETIMEDOUT after %v, want about the 500ms user timeout", el)
		}
	})
	t.Run("syn dropped", func(t *testing.T) {
		t.Parallel()
		addr := fullBacklog(t)
		_, res := runClient(t, TCPClient, "tcp-client", "--connect", addr, "--user-timeout", "300ms")
		if r := res["c1"]; r.Outcome != "timed-out" || r.Err != "ETIMEDOUT" || r.Op != "dial" {
			t.Errorf("result %+v, want timed-out by ETIMEDOUT in dial", r)
		}
	})
	t.Run("syn dropped, hang-after", func(t *testing.T) {
		t.Parallel()
		addr := fullBacklog(t)
		_, res := runClient(t, TCPClient, "tcp-client", "--connect", addr, "--hang-after", "300ms")
		if r := res["c1"]; r.Outcome != "hung" || r.Op != "dial" {
			t.Errorf("result %+v, want hung in dial", r)
		}
	})
}

// fullBacklog returns the address of a loopback listener whose accept queue is full, so the
// kernel drops further SYNs.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // room for one connection, never accepted
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}

// kernelKeepalive reads the kernel's keepalive defaults (net.ipv4.tcp_keepalive_*).
func kernelKeepalive(t *testing.T) (idle, intvl, cnt string) {
	read := func(name string) string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	return read("tcp_keepalive_time"), read("tcp_keepalive_intvl"), read("tcp_keepalive_probes")
}

func TestTCPClientHeartbeat(t *testing.T) {
	t.Parallel()
	t.Run("dead", func(t *testing.T) {
		t.Parallel()
		addr := sinkServer(t)
		start := time.Now()
		out, res := runClient(t, TCPClient, "tcp-client", "--connect", addr, "--heartbeat", "100ms", "--heartbeat-misses", "3",
			"--pattern", "idle:5s")
		if r := res["c1"]; r.Outcome != "dead" || r.Op != "heartbeat" {
			t.Errorf("result %+v, want dead", r)
		}
		misses := out.filter("heartbeat-miss", "c1")
		if len(misses) != 3 || *misses[2].N != 3 {
			t.Errorf("misses %+v, want 3 counted 1..3", misses)
		}
		if el := time.Since(start); el < 350*time.Millisecond || el > 2*time.Second {
			t.Errorf("dead after %v, want about 400ms (ping at 100ms, 3 misses)", el)
		}
	})
	t.Run("alive", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
		out, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--heartbeat", "100ms",
			"--pattern", "idle:550ms,send:z,hold:250ms")
		if r := res["c1"]; r.Outcome != "survived" || *r.N != 1 {
			t.Errorf("result %+v, want survived", r)
		}
		// 7 pings; a loaded machine may answer one late (a miss), never three in a row.
		if n := len(out.filter("heartbeat", "c1")); n < 5 {
			t.Errorf("%d heartbeats, want at least 5", n)
		}
	})
}

func TestTCPClientHungAndTimedOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		flags   []string
		outcome string
		err     string
		errors  int
	}{
		{"hang-after", []string{"--hang-after", "200ms"}, "hung", "", 0},
		{"read-timeout", []string{"--read-timeout", "200ms"}, "timed-out", "timeout", 1},
		{"hang-after first", []string{"--read-timeout", "2s", "--hang-after", "200ms"}, "hung", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := sinkServer(t)
			out, res := runClient(t, TCPClient, "tcp-client", append([]string{"--connect", addr, "--pattern", "send:a"}, tt.flags...)...)
			if r := res["c1"]; r.Outcome != tt.outcome || r.Err != tt.err || r.Op != "read" {
				t.Errorf("result %+v, want %s err %q in read", r, tt.outcome, tt.err)
			}
			if n := len(out.filter("error", "*")); n != tt.errors {
				t.Errorf("%d error events, want %d", n, tt.errors)
			}
		})
	}
}

func TestTCPClientRefused(t *testing.T) {
	t.Parallel()
	out, res := runClient(t, TCPClient, "tcp-client", "--connect", freePort(t))
	if r := res["c1"]; r.Outcome != "refused" || r.Err != "ECONNREFUSED" || r.Op != "dial" {
		t.Errorf("result %+v, want refused", r)
	}
	if len(out.filter("close", "*")) != 0 || len(out.filter("connect", "*")) != 0 {
		t.Errorf("connect or close without a connection: %+v", out.all())
	}
}

func TestTCPClientSocketOptions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
	out, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--keepalive-idle", "2s",
		"--keepalive-intvl", "1s", "--keepalive-cnt", "4", "--user-timeout", "1500ms")
	if res["c1"].Outcome != "survived" {
		t.Errorf("result %+v", res["c1"])
	}
	want := "SO_KEEPALIVE=1 TCP_KEEPIDLE=2s TCP_KEEPINTVL=1s TCP_KEEPCNT=4 TCP_USER_TIMEOUT=1500ms"
	if d := out.details("keepalive"); len(d) != 1 || d[0] != want {
		t.Errorf("keepalive %v, want %q", d, want)
	}

	// Only some flags: the others keep the kernel's values (not Go's 15 s).
	out, _ = runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--keepalive-idle", "3s")
	idle, intvl, cnt := kernelKeepalive(t)
	want = "SO_KEEPALIVE=1 TCP_KEEPIDLE=3s TCP_KEEPINTVL=" + intvl + "s TCP_KEEPCNT=" + cnt + " TCP_USER_TIMEOUT=0ms"
	if d := out.details("keepalive"); len(d) != 1 || d[0] != want {
		t.Errorf("keepalive %v, want %q (kernel idle %s)", d, want, idle)
	}
}

// TestTCPClientKeepaliveOff checks that without keepalive flags the socket has SO_KEEPALIVE
// off, where Go's Dialer would turn it on with 15 s.
func TestTCPClientKeepaliveOff(t *testing.T) {
	t.Parallel()
	ln := listenLoopback(t)
	addr := rawServer(t, ln, func(_ int, c *net.TCPConn) {})
	k := &tcpConn{o: &tcpClientOpts{connect: addr}, em: NewEmitter(newSink(t, "tcp-client"), "x", "tcp-client"), ctx: context.Background(), id: "c1"}
	if _, ok := k.dial(); !ok {
		t.Fatal("dial failed")
	}
	defer k.c.Close()
	if got := sockopts(k.c); !strings.HasPrefix(got, "SO_KEEPALIVE=0 ") {
		t.Errorf("socket options %q, want SO_KEEPALIVE=0", got)
	}
}

func TestTCPClientStopped(t *testing.T) {
	t.Parallel()
	srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	out := newSink(t, "tcp-client")
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	if err := TCPClient(ctx, []string{"--connect", srv.addr, "--conns", "2", "--pattern", "send:a,hold:10s"}, out); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stopped after %v", el)
	}
	for c, r := range out.results() {
		if r.Outcome != "hung" {
			t.Errorf("%s result %+v, want hung", c, r)
		}
	}
}

// TestHalfCloseSlowAnswer: a client that shuts down its sending half still gets the answer
// the server sends after --delay; the server closes after answering.
func TestHalfCloseSlowAnswer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0", "--delay", "300ms")
	start := time.Now()
	out, res := runClient(t, TCPClient, "tcp-client", "--connect", srv.addr, "--pattern", "write:work,shut:write,await:work", "--hang-after", "5s")
	if r := res["c1"]; r.Outcome != "survived" || *r.N != 1 {
		t.Errorf("result %+v, want survived with the answer", r)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("answered after %v, before the 300ms delay", el)
	}
	if n := len(out.filter("shutdown", "c1")); n != 1 {
		t.Errorf("%d shutdown events, want 1", n)
	}
	if d := srv.out.waitFor("close", 1, 3*time.Second).Detail; d != "eof" {
		t.Errorf("server close %q, want eof", d)
	}
}
