package agent

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestUDP(t *testing.T) {
	t.Parallel()
	for _, host := range loopbacks {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, UDPServer, "udp-server", "--listen", hostPort(host))
			out, res := runClient(t, UDPClient, "udp-client", "--connect", srv.addr, "--pattern", "send:a,idle:50ms,write:w,send:b")
			if r := res[""]; r.Outcome != "survived" || *r.N != 2 {
				t.Errorf("result %+v, want survived n=2", r)
			}
			if n := len(out.filter("send", "")); n != 3 {
				t.Errorf("%d sends, want 3", n)
			}
			srv.out.waitFor("recv", 3, time.Second)
			if a := srv.out.filter("accept", "*"); len(a) != 1 || a[0].Conn != "c1" {
				t.Errorf("server accepts %+v, want one peer", a)
			}
		})
	}
}

func TestUDPClientNoReply(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // receives, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	out, res := runClient(t, UDPClient, "udp-client", "--connect", pc.LocalAddr().String(), "--reply-timeout", "150ms",
		"--pattern", "send:a,send:b")
	if r := res[""]; r.Outcome != "timed-out" || r.Err != "timeout" || r.Op != "read" || *r.N != 0 {
		t.Errorf("result %+v, want timed-out", r)
	}
	if errs := out.filter("error", ""); len(errs) != 2 || errs[1].Err != "timeout" {
		t.Errorf("errors %+v, want 2 timeouts", errs)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("done after %v, before two reply timeouts", el)
	}
}

func TestUDPClientRefused(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // the port answers with ICMP port unreachable
	_, res := runClient(t, UDPClient, "udp-client", "--connect", addr, "--reply-timeout", "1s")
	if r := res[""]; r.Outcome != "refused" || r.Err != "ECONNREFUSED" {
		t.Errorf("result %+v, want refused", r)
	}
}

// TestUDPClientStopped: a stopped udp-client waiting for a reply returns at once, not
// after --reply-timeout (the runner gives it 2 s before SIGKILL).
func TestUDPClientStopped(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // receives, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	out := newSink(t, "udp-client")
	start := time.Now()
	if err := UDPClient(ctx, []string{"--connect", pc.LocalAddr().String(), "--reply-timeout", "10s", "--pattern", "send:a,send:b"}, out); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stopped after %v", el)
	}
	if r := out.results()[""]; r.Outcome != "error" || r.Err != "canceled" {
		t.Errorf("result %+v, want error canceled", r)
	}
}
