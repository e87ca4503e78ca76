package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, kind string
		args       []string
		want       string
	}{
		{"unknown kind", "ftp-client", nil, "unknown agent kind"},
		{"missing listen", "tcp-echo-server", nil, "--listen is required"},
		{"unknown flag", "tcp-client", []string{"--connect", "127.0.0.1:1", "--keepalive-time", "1s"}, "not defined: -keepalive-time"},
		{"keepalive is a switch", "tcp-client", []string{"--connect", "127.0.0.1:1", "--keepalive", "1s"}, `unexpected argument "1s"`},
		{"keepalive below a second", "tcp-echo-server", []string{"--listen", "127.0.0.1:0", "--keepalive-idle", "500ms"}, "below the option's unit, 1s"},
		{"extra argument", "udp-server", []string{"--listen", "127.0.0.1:0", "extra"}, `unexpected argument "extra"`},
		{"bad pattern op", "tcp-client", []string{"--connect", "127.0.0.1:1", "--pattern", "send:a,sleep:1s"}, `unknown op "sleep"`},
		{"bad pattern duration", "tcp-client", []string{"--connect", "127.0.0.1:1", "--pattern", "idle:soon"}, "not a duration"},
		{"shut read", "tcp-client", []string{"--connect", "127.0.0.1:1", "--pattern", "shut:read"}, "only the sending half"},
		{"hold for udp", "udp-client", []string{"--connect", "127.0.0.1:1", "--pattern", "hold:1s"}, `unknown op "hold"`},
		{"zero conns", "tcp-client", []string{"--connect", "127.0.0.1:1", "--conns", "0"}, "--conns 0"},
		{"negative duration", "tcp-client", []string{"--connect", "127.0.0.1:1", "--hang-after", "-1s"}, "--hang-after -1s is negative"},
		{"bad url", "http-client", []string{"--url", "https://x/"}, "not an http:// URL"},
		{"bad rate", "churn", []string{"--connect", "127.0.0.1:1", "--count", "3", "--rate", "5/h"}, "unit must be"},
		{"no count", "churn", []string{"--connect", "127.0.0.1:1"}, "--count 0"},
		{"bad upstream", "proxy", []string{"--listen", "127.0.0.1:0", "--upstreams", "a:1,b"}, `"b" is not ADDR:PORT`},
		{"no upstreams", "proxy", []string{"--listen", "127.0.0.1:0"}, "--upstreams is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), tt.kind, tt.args, &out)
			var ue UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a UsageError with %q", err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("events on a usage error: %s", out.String())
			}
		})
	}
}

func TestSetupFailure(t *testing.T) {
	t.Parallel()
	ln := listenLoopback(t)
	defer ln.Close()
	out := newSink(t, "tcp-echo-server")
	err := TCPEchoServer(context.Background(), []string{"--listen", ln.Addr().String()}, out)
	var ue UsageError
	if err == nil || errors.As(err, &ue) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v, want EADDRINUSE, not a usage error", err)
	}
	if e := out.filter("error", ""); len(e) != 1 || e[0].Op != "listen" || e[0].Err != "EADDRINUSE" {
		t.Errorf("events %+v, want error op=listen", out.all())
	}
}

func TestErrnoOutcome(t *testing.T) {
	t.Parallel()
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	tests := []struct {
		name         string
		err          error
		errno, outco string
	}{
		{"nil", nil, "", "survived"},
		{"reset", op(syscall.ECONNRESET), "ECONNRESET", "reset"},
		{"broken pipe", op(syscall.EPIPE), "EPIPE", "reset"},
		{"kernel timeout", op(syscall.ETIMEDOUT), "ETIMEDOUT", "timed-out"},
		{"refused", op(syscall.ECONNREFUSED), "ECONNREFUSED", "refused"},
		{"unreachable", op(syscall.EHOSTUNREACH), "EHOSTUNREACH", "error"},
		{"our deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timeout", "timed-out"},
		{"context deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout", "timed-out"},
		{"eof", fmt.Errorf("read: %w", io.EOF), "EOF", "closed"},
		{"other", errors.New("something odd"), "something odd", "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Errno(tt.err); got != tt.errno {
				t.Errorf("Errno = %q, want %q", got, tt.errno)
			}
			if got := Outcome(tt.err); got != tt.outco {
				t.Errorf("Outcome = %q, want %q", got, tt.outco)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	t.Parallel()
	steps, err := ParsePattern("send:hello, idle:7s,write:x,hold:1m", "send", "write", "idle", "hold")
	want := []Step{{Op: "send", Text: "hello"}, {Op: "idle", D: 7 * time.Second}, {Op: "write", Text: "x"}, {Op: "hold", D: time.Minute}}
	if err != nil || fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("steps %v, %v; want %v", steps, err, want)
	}
	for _, bad := range []string{"", "send", "send:", "idle:-1s", "idle:5", "wait:1s"} {
		if _, err := ParsePattern(bad, "send", "write", "idle", "hold"); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestEmitter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	em := NewEmitter(bw, "client-1", "tcp-client")
	em.Now = func() time.Time { return time.Date(2026, 11, 21, 8, 40, 4, 120000000, time.FixedZone("CET", 3600)) }
	em.Emit(Event{Conn: "c1", Event: EvError, Op: "read", Err: "ECONNRESET", Detail: "a -> b"})
	em.Emit(Event{Event: EvRequest, N: count(0), Reused: boolp(false)})
	// Flushed per line: the bufio.Writer holds nothing back.
	want := `{"t":"2026-11-21T07:40:04.120000000Z","agent":"client-1","kind":"tcp-client","conn":"c1","event":"error","op":"read","err":"ECONNRESET","detail":"a -> b"}
{"t":"2026-11-21T07:40:04.120000000Z","agent":"client-1","kind":"tcp-client","event":"request","n":0,"reused":false}
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	s := newSink(t, "tcp-client")
	s.Write(buf.Bytes())
	var back Event
	if err := jsonUnmarshalStrict(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &back); err != nil || !back.T.Equal(em.Now()) {
		t.Errorf("Event round trip: %+v, %v", back, err)
	}
}

// deadWriter is a stdout whose reader is gone.
type deadWriter struct{}

func (deadWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestDeadStdout: an agent that did its job but could not write its events fails (exit 1).
func TestDeadStdout(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	err = Run(context.Background(), "udp-client", []string{"--connect", pc.LocalAddr().String(), "--pattern", "write:x"}, deadWriter{})
	var ue UsageError
	if err == nil || errors.As(err, &ue) || !errors.Is(err, syscall.EPIPE) || !strings.Contains(err.Error(), "write events") {
		t.Errorf("Run with a dead stdout: %v, want a failure to write events", err)
	}
}
