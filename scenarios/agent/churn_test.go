package agent

import (
	"testing"
	"time"
)

func TestChurn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags []string
		n     int
		least time.Duration
	}{
		{"fast", []string{"--count", "60"}, 60, 0},
		{"rate", []string{"--count", "10", "--rate", "200/s"}, 10, 45 * time.Millisecond},
		{"hold", []string{"--count", "20", "--hold", "150ms"}, 20, 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
			start := time.Now()
			out, res := runClient(t, Churn, "churn", append([]string{"--connect", srv.addr}, tt.flags...)...)
			if r := res[""]; r.Outcome != "survived" || *r.N != int64(tt.n) {
				t.Errorf("result %+v, want survived n=%d", r, tt.n)
			}
			if el := time.Since(start); el < tt.least {
				t.Errorf("done after %v, want at least %v", el, tt.least)
			}
			if n, c := len(out.filter("connect", "*")), len(out.filter("close", "*")); n != tt.n || c != tt.n {
				t.Errorf("%d connects, %d closes", n, c)
			}
			srv.out.waitFor("close", tt.n, 2*time.Second)
			if n := len(srv.out.filter("accept", "*")); n != tt.n {
				t.Errorf("server accepted %d", n)
			}
		})
	}
	t.Run("hold, peers alive at once", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, TCPEchoServer, "tcp-echo-server", "--listen", "127.0.0.1:0")
		done := make(chan struct{})
		go func() {
			defer close(done)
			runClient(t, Churn, "churn", "--connect", srv.addr, "--count", "15", "--hold", "1500ms")
		}()
		srv.out.waitFor("accept", 15, 2*time.Second)
		if n := len(srv.out.filter("close", "*")); n != 0 {
			t.Errorf("%d closed while all should be held", n)
		}
		<-done
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		out, res := runClient(t, Churn, "churn", "--connect", freePort(t), "--count", "5")
		if r := res[""]; r.Outcome != "refused" || *r.N != 0 {
			t.Errorf("result %+v, want refused n=0", r)
		}
		if n := len(out.filter("error", "*")); n != 5 {
			t.Errorf("%d errors, want 5", n)
		}
	})
}
