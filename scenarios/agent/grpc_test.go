package agent

import (
	"strings"
	"testing"
)

func TestGRPCCalls(t *testing.T) {
	t.Parallel()
	srv := startServer(t, GRPCServer, "grpc-server", "--listen", "127.0.0.1:0")
	out, res := runClient(t, GRPCClient, "grpc-client", "--connect", srv.addr, "--pattern", "call:hello,slow:300ms,call:again")
	if r := res[""]; r.Outcome != "survived" || *r.N != 3 {
		t.Errorf("result %+v, want survived with 3 calls", r)
	}
	if got := out.details("recv"); strings.Join(got, ",") != "hello,answer,again" {
		t.Errorf("answers %q", got)
	}
	if n := len(out.filter("connect", "c1")); n != 1 {
		t.Errorf("%d connect events, want 1: %+v", n, out.all())
	}
	srv.out.waitFor("request", 3, 2*1e9)
	if got := srv.out.details("request"); len(got) != 3 || got[1] != "Echo slow 300ms answer" {
		t.Errorf("server requests %q", got)
	}
}

func TestGRPCDeadlineAndRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t, GRPCServer, "grpc-server", "--listen", "127.0.0.1:0")
	_, res := runClient(t, GRPCClient, "grpc-client", "--connect", srv.addr, "--pattern", "slow:2s", "--deadline", "200ms")
	if r := res[""]; r.Outcome != "timed-out" || r.Err != "DEADLINE_EXCEEDED" || r.Op != "call" {
		t.Errorf("result %+v, want timed-out DEADLINE_EXCEEDED", r)
	}
	_, res = runClient(t, GRPCClient, "grpc-client", "--connect", freePort(t), "--deadline", "2s")
	if r := res[""]; r.Outcome != "reset" || r.Err != "UNAVAILABLE" {
		t.Errorf("result %+v, want UNAVAILABLE (reset)", r)
	}
}
