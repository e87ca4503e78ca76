package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPServerClosesIdle checks with a raw socket that an idle keep-alive connection, and
// a new connection that never sends a request, are really closed at the keepalive timeout.
func TestHTTPServerClosesIdle(t *testing.T) {
	t.Parallel()
	srv := startServer(t, HTTPServer, "http-server", "--listen", "127.0.0.1:0", "--keepalive-timeout", "300ms")
	for _, request := range []bool{true, false} {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if request {
			io.WriteString(c, "GET /x HTTP/1.1\r\nHost: lab\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "ok\n" || resp.Close {
				t.Fatalf("response %d %q close=%v", resp.StatusCode, body, resp.Close)
			}
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = br.ReadByte()
		if el := time.Since(start); err != io.EOF || el < 150*time.Millisecond || el > 2*time.Second {
			t.Errorf("request=%v: read returned %v after %v, want EOF after 300ms", request, err, el)
		}
	}
	srv.out.waitFor("close", 2, time.Second)
	if d := srv.out.details("close"); strings.Join(d, ",") != "server idle timeout,server idle timeout" {
		t.Errorf("close events %v", d)
	}
	if r := srv.out.filter("request", "*"); len(r) != 1 || r[0].Detail != "GET /x 200" || *r[0].Reused || *r[0].N != 1 {
		t.Errorf("request events %+v", r)
	}
}

func TestHTTPClientReuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		serverKA    string
		clientFlags []string
		reused      string // per request
		connects    int
		clientClose string // detail of the client's close events before the end
		serverClose string
	}{
		{"server keepalive longer than interval", "2s", []string{"--interval", "100ms"}, "false,true,true", 1, "", ""},
		{"server keepalive shorter than interval", "100ms", []string{"--interval", "350ms"}, "false,false,false", 3, "eof", "server idle timeout"},
		{"client idle-conn-timeout shorter", "2s", []string{"--interval", "350ms", "--idle-conn-timeout", "100ms"}, "false,false,false", 3, "client idle timeout", "eof"},
		{"no pool", "2s", []string{"--interval", "0s", "--max-idle", "0"}, "false,false,false", 3, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, HTTPServer, "http-server", "--listen", "127.0.0.1:0", "--keepalive-timeout", tt.serverKA)
			out, res := runClient(t, HTTPClient, "http-client", append([]string{"--url", "http://" + srv.addr + "/", "--requests", "3"}, tt.clientFlags...)...)
			if r := res[""]; r.Outcome != "survived" || *r.N != 3 {
				t.Errorf("result %+v, want survived n=3", r)
			}
			var reused []string
			for _, r := range out.filter("request", "*") {
				reused = append(reused, map[bool]string{true: "true", false: "false"}[*r.Reused])
				if r.Detail != "200 OK" {
					t.Errorf("request %+v", r)
				}
			}
			if got := strings.Join(reused, ","); got != tt.reused {
				t.Errorf("reused %s, want %s", got, tt.reused)
			}
			if n := len(out.filter("connect", "*")); n != tt.connects {
				t.Errorf("%d connections, want %d", n, tt.connects)
			}
			if n := len(out.filter("error", "*")); n != 0 {
				t.Errorf("%d errors", n)
			}
			closes := out.details("close")
			if tt.clientClose != "" && (len(closes) < 2 || closes[0] != tt.clientClose || closes[1] != tt.clientClose) {
				t.Errorf("client closes %v, want %s before the end", closes, tt.clientClose)
			}
			if tt.serverClose != "" {
				srv.out.waitFor("close", 2, time.Second)
				if d := srv.out.details("close"); d[0] != tt.serverClose || d[1] != tt.serverClose {
					t.Errorf("server closes %v, want %s", d, tt.serverClose)
				}
			}
		})
	}
}

// staleServer answers every request, except that on its first connection the second
// request is met by a RST: a pooled connection the box forgot.
func staleServer(t *testing.T) string {
	return rawServer(t, listenLoopback(t), func(n int, c *net.TCPConn) {
		br := bufio.NewReader(c)
		for i := 1; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if n == 1 && i == 2 {
				c.SetLinger(0)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		}
	})
}

func TestHTTPClientStalePooledConnection(t *testing.T) {
	t.Parallel()
	t.Run("POST fails", func(t *testing.T) {
		t.Parallel()
		out, res := runClient(t, HTTPClient, "http-client", "--url", "http://"+staleServer(t)+"/", "--requests", "3",
			"--interval", "50ms", "--method", "POST")
		if r := res[""]; r.Outcome != "reset" || r.Err != "ECONNRESET" || r.Op != "read" || *r.N != 2 {
			t.Errorf("result %+v, want reset, 2 requests done", r)
		}
		errs := out.filter("error", "c1")
		if len(errs) != 1 || errs[0].Err != "ECONNRESET" || *errs[0].N != 2 {
			t.Errorf("errors %+v, want ECONNRESET on request 2", errs)
		}
	})
	t.Run("GET retried by the Transport", func(t *testing.T) {
		t.Parallel()
		out, res := runClient(t, HTTPClient, "http-client", "--url", "http://"+staleServer(t)+"/", "--requests", "3", "--interval", "50ms")
		if r := res[""]; r.Outcome != "survived" || *r.N != 3 {
			t.Errorf("result %+v, want survived", r)
		}
		reqs := out.filter("request", "*")
		if len(reqs) != 3 || reqs[1].Conn != "c2" || *reqs[1].Reused {
			t.Errorf("requests %+v, want the second on a new c2", reqs)
		}
		if cl := out.filter("close", "c1"); len(cl) != 1 || cl[0].Detail != "error ECONNRESET" {
			t.Errorf("c1 close %+v, want error ECONNRESET", cl)
		}
	})
	t.Run("hang-after", func(t *testing.T) {
		t.Parallel()
		out, res := runClient(t, HTTPClient, "http-client", "--url", "http://"+sinkServer(t)+"/", "--requests", "3", "--hang-after", "200ms")
		if r := res[""]; r.Outcome != "hung" || *r.N != 0 {
			t.Errorf("result %+v, want hung", r)
		}
		if n := len(out.filter("error", "*")); n != 0 {
			t.Errorf("%d errors for a hung request", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		_, res := runClient(t, HTTPClient, "http-client", "--url", "http://"+freePort(t)+"/", "--requests", "2", "--interval", "0s")
		if r := res[""]; r.Outcome != "refused" || r.Op != "dial" || *r.N != 0 {
			t.Errorf("result %+v, want refused", r)
		}
	})
}

func TestProxyPool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		proxyFlags    []string
		upstreamKA    string
		interval      string
		dials, reuses int
		closeDetail   string
		closes        int
	}{
		// nginx upstream keepalive 2 over 3 upstreams round-robin: the pool is always full of
		// the wrong upstreams, every request dials and evicts.
		{"pool 2 of 3", []string{"--pool", "2"}, "60s", "0s", 6, 0, "pool full", 4},
		{"pool 6 of 3", []string{"--pool", "6"}, "60s", "0s", 3, 3, "", 0},
		{"no pool", []string{"--pool", "0"}, "60s", "0s", 6, 0, "pool disabled", 6},
		{"idle timeout", []string{"--pool", "6", "--idle-timeout", "100ms"}, "60s", "250ms", 6, 0, "idle timeout", 6},
		{"upstream closes", []string{"--pool", "6"}, "100ms", "250ms", 6, 0, "upstream closed", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ups []string
			var upstreams []*server
			for range 3 {
				s := startServer(t, HTTPServer, "http-server", "--listen", "127.0.0.1:0", "--keepalive-timeout", tt.upstreamKA)
				upstreams = append(upstreams, s)
				ups = append(ups, s.addr)
			}
			px := startServer(t, Proxy, "proxy", append([]string{"--listen", "127.0.0.1:0", "--upstreams", strings.Join(ups, ",")}, tt.proxyFlags...)...)
			_, res := runClient(t, HTTPClient, "http-client", "--url", "http://"+px.addr+"/p?q=1", "--requests", "6", "--interval", tt.interval)
			if r := res[""]; r.Outcome != "survived" || *r.N != 6 {
				t.Errorf("client result %+v", r)
			}
			upCloses := func() int {
				n := 0
				for _, ev := range px.out.filter("close", "*") {
					if strings.HasPrefix(ev.Conn, "u") && ev.Detail == tt.closeDetail {
						n++
					}
				}
				return n
			}
			for deadline := time.Now().Add(2 * time.Second); upCloses() < tt.closes && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			dials, reuses := px.out.filter("dial", "*"), px.out.filter("reuse", "*")
			if len(dials) != tt.dials || len(reuses) != tt.reuses {
				t.Errorf("%d dials, %d reuses; want %d, %d", len(dials), len(reuses), tt.dials, tt.reuses)
			}
			reqs := px.out.filter("request", "*")
			if len(reqs) != 6 {
				t.Fatalf("%d proxied requests", len(reqs))
			}
			for i, r := range reqs {
				want := "GET /p?q=1 -> " + ups[i%3] + " 200"
				if r.Detail != want || !strings.HasPrefix(r.Conn, "u") {
					t.Errorf("request %d %+v, want %q", i, r, want)
				}
			}
			if n := upCloses(); n != tt.closes {
				t.Errorf("%d upstream closes %q, want %d; all: %v", n, tt.closeDetail, tt.closes, px.out.details("close"))
			}
			total := 0
			for _, u := range upstreams {
				got := u.out.filter("request", "*")
				if len(got) != 2 {
					t.Errorf("upstream %s served %d requests, want 2", u.addr, len(got))
				}
				total += len(u.out.filter("accept", "*"))
			}
			if total != tt.dials {
				t.Errorf("upstreams accepted %d connections, proxy dialled %d", total, tt.dials)
			}
		})
	}
}
