// Package agent holds the built-in agents that scenarios start inside a lab namespace as
// `idlegate agent KIND [flags]`: echo servers, clients with idle patterns, TCP keepalive,
// TCP_USER_TIMEOUT and application heartbeats, an HTTP server and keep-alive client, UDP
// request/response, a connection-churn generator, a reverse proxy with an idle upstream
// pool, and a grpc-go server and client with gRPC keepalive. TCP keepalive is off on every
// socket unless a keepalive flag asks for it (keepaliveOpts). docs/agents.md is the contract
// with the scenario runner.
//
// An agent does one job with real kernel sockets and reports each thing it sees as one NDJSON
// line on its output (see Emitter):
//
//  1. parse flags (a mistake is a UsageError: exit 2);
//  2. listen or dial (a server that cannot listen returns an error: exit 1);
//  3. run the job, one event per step, errors classified by Errno and Outcome;
//  4. clients end each connection with exactly one `result` event; servers return nil when
//     their context is cancelled (SIGTERM).
package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Func runs one agent kind with its command-line flags (without the kind), writing events to
// out. It returns nil when the agent did its job, whatever the outcome; a UsageError for bad
// flags; flag.ErrHelp after printing help to stderr; any other error for a setup failure.
type Func func(ctx context.Context, args []string, out io.Writer) error

// Kinds maps each agent kind to its function.
var Kinds = map[string]Func{
	"tcp-echo-server": TCPEchoServer,
	"tcp-client":      TCPClient,
	"http-server":     HTTPServer,
	"http-client":     HTTPClient,
	"udp-server":      UDPServer,
	"udp-client":      UDPClient,
	"churn":           Churn,
	"proxy":           Proxy,
	"grpc-server":     GRPCServer,
	"grpc-client":     GRPCClient,
}

// KindNames returns the agent kinds, sorted.
func KindNames() []string {
	names := make([]string, 0, len(Kinds))
	for k := range Kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Run runs the agent of the given kind. An agent that could not write its events (its
// stdout gone) fails even when it did its job: nobody saw what it did.
func Run(ctx context.Context, kind string, args []string, out io.Writer) error {
	f, ok := Kinds[kind]
	if !ok {
		return UsageError{fmt.Errorf("unknown agent kind %q; known kinds: %s", kind, strings.Join(KindNames(), ", "))}
	}
	w := &eventsOut{w: out}
	err := f(ctx, args, w)
	if werr := w.firstErr(); err == nil && werr != nil {
		return fmt.Errorf("agent %s: write events: %w", kind, werr)
	}
	return err
}

// eventsOut is an agent's output that remembers the first error writing to it.
type eventsOut struct {
	w io.Writer

	mu  sync.Mutex // guards err
	err error
}

func (o *eventsOut) Write(b []byte) (int, error) {
	n, err := o.w.Write(b)
	o.note(err)
	return n, err
}

// Flush flushes the output when it is buffered (Emitter flushes after each line).
func (o *eventsOut) Flush() error {
	if f, ok := o.w.(interface{ Flush() error }); ok {
		err := f.Flush()
		o.note(err)
		return err
	}
	return nil
}

func (o *eventsOut) note(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
}

func (o *eventsOut) firstErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// UsageError is a mistake in an agent's flags (exit code 2).
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// flags is the flag set of one kind, with the --name flag every kind has.
type flags struct {
	*flag.FlagSet
	kind string
	name string
}

func newFlags(kind string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(kind, flag.ContinueOnError), kind: kind}
	f.SetOutput(io.Discard)
	f.StringVar(&f.name, "name", kind, "the agent's name in its events")
	return f
}

// parse parses args; on -h/--help it prints the flags to stderr and returns flag.ErrHelp.
func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.SetOutput(os.Stderr)
			fmt.Fprintf(os.Stderr, "usage: idlegate agent %s [flags]\n", f.kind)
			f.PrintDefaults()
			return flag.ErrHelp
		}
		return usagef("agent %s: %v", f.kind, err)
	}
	if f.NArg() > 0 {
		return usagef("agent %s: unexpected argument %q", f.kind, f.Arg(0))
	}
	return nil
}

// required reports a usage error naming the first of the given flags left empty.
func (f *flags) required(names ...string) error {
	for _, n := range names {
		if f.Lookup(n).Value.String() == "" {
			return usagef("agent %s: --%s is required", f.kind, n)
		}
	}
	return nil
}

func (f *flags) emitter(out io.Writer) *Emitter { return NewEmitter(out, f.name, f.kind) }

// nonNegative checks duration flags.
func (f *flags) nonNegative(ds map[string]time.Duration) error {
	for n, d := range ds {
		if d < 0 {
			return usagef("agent %s: --%s %v is negative", f.kind, n, d)
		}
	}
	return nil
}

// sleep waits for d or until ctx is done; it reports whether the whole d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// aLongTimeAgo is a deadline in the past that unblocks any pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// deadlines sets the deadlines of one connection so that stopping the agent wins: once
// ctx is done every deadline of the connection is in the past, also one the agent sets
// afterwards, so that no blocked or later read or write outlasts the stop.
type deadlines struct {
	ctx  context.Context
	c    net.Conn
	stop func() bool
}

// watchDeadlines unblocks c's I/O for good when ctx is done, until release.
func watchDeadlines(ctx context.Context, c net.Conn) *deadlines {
	return &deadlines{ctx: ctx, c: c, stop: context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })}
}

func (d *deadlines) set(t time.Time)      { d.apply(d.c.SetDeadline, t) }
func (d *deadlines) setRead(t time.Time)  { d.apply(d.c.SetReadDeadline, t) }
func (d *deadlines) setWrite(t time.Time) { d.apply(d.c.SetWriteDeadline, t) }

// release stops watching ctx.
func (d *deadlines) release() { d.stop() }

// apply sets a deadline, then puts it back in the past if ctx is done by now. ctx is done
// before the AfterFunc runs, so the AfterFunc either ran before this check (which sees
// ctx done) or runs after t was set (and overrides it): either way the past wins.
func (d *deadlines) apply(set func(time.Time) error, t time.Time) {
	set(t)
	if d.ctx.Err() != nil {
		set(aLongTimeAgo)
	}
}

// WaitTimeout waits for wg at most d and reports whether it is done. On a timeout the
// goroutine waiting for wg stays until wg is done. The scenario runner uses it too.
func WaitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
