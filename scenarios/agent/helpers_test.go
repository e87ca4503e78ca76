package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// docEvent is an event line as docs/agents.md defines it, written out independently of Event
// so that a field the contract does not name fails the strict decoding.
type docEvent struct {
	T       string `json:"t"`
	Agent   string `json:"agent"`
	Kind    string `json:"kind"`
	Conn    string `json:"conn"`
	Event   string `json:"event"`
	Op      string `json:"op"`
	Err     string `json:"err"`
	Detail  string `json:"detail"`
	N       *int64 `json:"n"`
	Outcome string `json:"outcome"`
	Reused  *bool  `json:"reused"`
}

var (
	docEvents   = []string{"listening", "accept", "connect", "send", "recv", "idle", "keepalive", "heartbeat", "heartbeat-miss", "request", "dial", "reuse", "close", "shutdown", "error", "result"}
	docOps      = []string{"dial", "read", "write", "accept", "listen", "heartbeat", "call"}
	docOutcomes = []string{"survived", "reset", "timed-out", "dead", "hung", "refused", "closed", "error"}
	// RFC 3339 with nine digits of nanoseconds, in UTC.
	docTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`)
)

// sink collects an agent's output, checking every line against the contract.
type sink struct {
	t    *testing.T
	kind string

	mu     sync.Mutex // guards the fields below
	part   []byte     // an unfinished line
	events []docEvent
	wake   chan struct{} // closed and replaced on each event
}

func newSink(t *testing.T, kind string) *sink {
	return &sink{t: t, kind: kind, wake: make(chan struct{})}
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part = append(s.part, p...)
	for {
		i := bytes.IndexByte(s.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := s.part[:i]
		s.part = s.part[i+1:]
		s.events = append(s.events, s.check(line))
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// check decodes one line strictly and checks its fields.
func (s *sink) check(line []byte) docEvent {
	t := s.t
	var ev docEvent
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Errorf("%s: line %s: %v", s.kind, line, err)
		return ev
	}
	if dec.More() {
		t.Errorf("%s: line %s: more than one JSON value", s.kind, line)
	}
	if !docTime.MatchString(ev.T) {
		t.Errorf("%s: line %s: t is not RFC 3339 UTC with nanoseconds", s.kind, line)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.T); err != nil {
		t.Errorf("%s: line %s: %v", s.kind, line, err)
	}
	if ev.Agent == "" || ev.Kind != s.kind {
		t.Errorf("%s: line %s: agent or kind wrong", s.kind, line)
	}
	if !slices.Contains(docEvents, ev.Event) {
		t.Errorf("%s: line %s: unknown event", s.kind, line)
	}
	if ev.Event == "error" && (!slices.Contains(docOps, ev.Op) || ev.Err == "") {
		t.Errorf("%s: line %s: error without a known op or an err", s.kind, line)
	}
	if (ev.Event == "result") != (ev.Outcome != "") || ev.Outcome != "" && !slices.Contains(docOutcomes, ev.Outcome) {
		t.Errorf("%s: line %s: outcome %q on event %q", s.kind, line, ev.Outcome, ev.Event)
	}
	if ev.Event == "request" && ev.Reused == nil {
		t.Errorf("%s: line %s: request without reused", s.kind, line)
	}
	return ev
}

// all returns the events so far.
func (s *sink) all() []docEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// filter returns the events named name (all if ""), of conn if conn != "*".
func (s *sink) filter(name, conn string) []docEvent {
	var out []docEvent
	for _, ev := range s.all() {
		if (name == "" || ev.Event == name) && (conn == "*" || ev.Conn == conn) {
			out = append(out, ev)
		}
	}
	return out
}

// details returns the details of the events named name, of any connection.
func (s *sink) details(name string) []string {
	var out []string
	for _, ev := range s.filter(name, "*") {
		out = append(out, ev.Detail)
	}
	return out
}

// waitFor waits until n events named name were seen and returns the nth.
func (s *sink) waitFor(name string, n int, within time.Duration) docEvent {
	s.t.Helper()
	deadline := time.After(within)
	for {
		s.mu.Lock()
		seen, wake := 0, s.wake
		for _, ev := range s.events {
			if ev.Event == name {
				if seen++; seen == n {
					s.mu.Unlock()
					return ev
				}
			}
		}
		s.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			s.t.Fatalf("%s: no %d %q events within %v; events: %v", s.kind, n, name, within, s.all())
		}
	}
}

// results checks that each connection has exactly one result, as its last event, and
// returns them by connection.
func (s *sink) results() map[string]docEvent {
	s.t.Helper()
	last := map[string]docEvent{}
	res := map[string]docEvent{}
	for _, ev := range s.all() {
		if ev.Conn != "" || ev.Event == "result" {
			if prev, ok := res[ev.Conn]; ok {
				s.t.Errorf("%s: %q after the result of conn %q: %+v", s.kind, ev.Event, ev.Conn, prev)
			}
			last[ev.Conn] = ev
		}
		if ev.Event == "result" {
			res[ev.Conn] = ev
		}
	}
	return res
}

// server is an agent running in the background.
type server struct {
	addr string
	out  *sink
	stop func() // cancels the agent and waits for it
}

// startServer runs a server agent until the test ends and returns its listening address.
func startServer(t *testing.T, f Func, kind string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{out: newSink(t, kind)}
	done := make(chan error, 1)
	go func() { done <- f(ctx, args, s.out) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s %v: %v", kind, args, err)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("%s %v did not stop", kind, args)
			}
		})
	}
	t.Cleanup(s.stop)
	select {
	case err := <-done:
		t.Fatalf("%s %v: %v", kind, args, err)
	default:
	}
	s.addr = s.out.waitFor("listening", 1, 2*time.Second).Detail
	return s
}

// runClient runs a client agent to its end and checks its results.
func runClient(t *testing.T, f Func, kind string, args ...string) (*sink, map[string]docEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := newSink(t, kind)
	if err := f(ctx, args, out); err != nil {
		t.Fatalf("%s %v: %v", kind, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: still running after 10s", kind, args)
	}
	return out, out.results()
}

// loopbacks are the addresses tests use: never anything but loopback.
var loopbacks = []string{"127.0.0.1", "::1"}

// freePort returns a loopback TCP address nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// rawServer accepts on loopback and runs handle per connection until the test ends.
func rawServer(t *testing.T, ln net.Listener, handle func(n int, c *net.TCPConn)) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(n, c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// sinkServer accepts and reads forever without answering (a peer that never replies).
func sinkServer(t *testing.T) string {
	return rawServer(t, listenLoopback(t), func(_ int, c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
}

func hostPort(host string) string { return net.JoinHostPort(host, "0") }

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
