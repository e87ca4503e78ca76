package agent

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tcpTimer returns the timer field ("tr") of the IPv4 socket local -> remote in
// /proc/net/tcp: 0 none, 1 retransmit, 2 keepalive (or another timer), 3 TIME_WAIT.
func tcpTimer(t *testing.T, local, remote string) int {
	t.Helper()
	hexAddr := func(s string) string {
		ap, err := net.ResolveTCPAddr("tcp4", s)
		if err != nil {
			t.Fatal(err)
		}
		ip := ap.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port)
	}
	l, r := hexAddr(local), hexAddr(remote)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 5 && fs[1] == l && fs[2] == r {
			tr, err := strconv.Atoi(strings.SplitN(fs[5], ":", 2)[0])
			if err != nil {
				t.Fatalf("/proc/net/tcp: %q: %v", sc.Text(), err)
			}
			return tr
		}
	}
	t.Fatalf("no socket %s -> %s in /proc/net/tcp", local, remote)
	return -1
}

// TestServersKeepaliveOnlyWhenAsked checks the accepted sockets of every server agent (and
// the proxy's upstream socket): without keepalive flags the kernel runs no keepalive timer
// on them (Go's net.ListenConfig would have armed one for 15 s); with them it does.
func TestServersKeepaliveOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	type kind struct {
		name string
		f    Func
		args []string
	}
	for _, k := range []kind{
		{"tcp-echo-server", TCPEchoServer, nil},
		{"http-server", HTTPServer, nil},
		{"proxy", Proxy, []string{"--upstreams", "127.0.0.1:1"}},
	} {
		for _, ka := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s keepalive %v", k.name, ka), func(t *testing.T) {
				t.Parallel()
				args := append([]string{"--listen", "127.0.0.1:0"}, k.args...)
				if ka {
					args = append(args, "--keepalive-idle", "30s", "--keepalive-intvl", "2s", "--keepalive-cnt", "4")
				}
				srv := startServer(t, k.f, k.name, args...)
				c, err := net.DialTimeout("tcp", srv.addr, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				srv.out.waitFor("accept", 1, 5*time.Second)
				want := 0
				if ka {
					want = 2
					srv.out.waitFor("keepalive", 1, 5*time.Second)
					if d := srv.out.details("keepalive"); len(d) != 1 || !strings.HasPrefix(d[0], "SO_KEEPALIVE=1 TCP_KEEPIDLE=30s TCP_KEEPINTVL=2s TCP_KEEPCNT=4 ") {
						t.Errorf("keepalive events %q, want the socket's options", d)
					}
				} else if d := srv.out.details("keepalive"); len(d) != 0 {
					t.Errorf("keepalive events %q without keepalive flags", d)
				}
				// The accepted socket is the server's end: local = the server, remote = us.
				if got := tcpTimer(t, c.RemoteAddr().String(), c.LocalAddr().String()); got != want {
					t.Errorf("timer of the accepted socket %d, want %d (0: no keepalive, 2: keepalive armed)", got, want)
				}
			})
		}
	}
}

// TestKeepaliveOpts checks the flags' mapping to Go's configuration: nothing means off
// (KeepAlive -1 beside Enable false), a flag left out keeps the kernel's value.
func TestKeepaliveOpts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    keepaliveOpts
		want net.KeepAliveConfig
	}{
		{"none", keepaliveOpts{}, net.KeepAliveConfig{}},
		{"--keepalive", keepaliveOpts{on: true}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}},
		{"idle only", keepaliveOpts{idle: 5 * time.Second}, net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: -1, Count: -1}},
		{"all", keepaliveOpts{idle: 5 * time.Second, intvl: time.Second, cnt: 3}, net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.config(); got != tt.want {
				t.Errorf("config %+v, want %+v", got, tt.want)
			}
			if d, lc := tt.o.dialer(), tt.o.listenConfig(); d.KeepAlive != -1 || lc.KeepAlive != -1 {
				t.Errorf("KeepAlive %v / %v, want -1 so that Go's 15 s default never applies", d.KeepAlive, lc.KeepAlive)
			}
		})
	}
}
