package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The gRPC agents speak one unary method, /idlegate.Echo/Echo, whose request and answer
// are raw bytes (rawCodec): no protobuf, no generated code. A request "slow D TEXT" is
// answered with TEXT after D, any other request at once with itself.
const grpcEchoMethod = "/idlegate.Echo/Echo"

// rawCodec marshals *[]byte as it is.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "idlegate-raw" }

// grpcLogOnce sends grpc-go's own ERROR lines to stderr (the timeline shows them as
// "name! ..."), where its GOAWAY too_many_pings message comes; INFO and WARNING are dropped.
var grpcLogOnce sync.Once

func grpcLog() {
	grpcLogOnce.Do(func() { grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)) })
}

// GRPCServer is `grpc-server --listen ADDR:PORT [--min-time D] [--permit-without-stream]
// [--time D] [--timeout D] [--max-connection-idle D] [--keepalive ...]`: a grpc-go server of
// the echo method with the keepalive enforcement policy and server parameters given
// (grpc-go's defaults otherwise: MinTime 5m, PermitWithoutStream false, Time 2h, Timeout
// 20s). A client that pings more often than MinTime (or at all without an active call,
// unless PermitWithoutStream) collects strikes, and on the third the server sends GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" and closes the connection. TCP keepalive only with the
// keepalive flags (keepaliveOpts).
//
// Events: listening, accept and close per TCP connection (close detail "server closed",
// "eof", "shutdown", "error ERRNO"), request per call (detail "Echo TEXT" or "Echo slow D
// TEXT", n its number on the connection, reused from the second).
func GRPCServer(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("grpc-server")
	var listen string
	var ka keepaliveOpts
	ep := keepalive.EnforcementPolicy{MinTime: 5 * time.Minute} // grpc-go's defaults
	sp := keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}
	f.StringVar(&listen, "listen", "", "ADDR:PORT to listen on (required)")
	f.DurationVar(&ep.MinTime, "min-time", ep.MinTime, "keepalive.EnforcementPolicy.MinTime: the shortest time between a client's pings that is no strike")
	f.BoolVar(&ep.PermitWithoutStream, "permit-without-stream", false, "keepalive.EnforcementPolicy.PermitWithoutStream: allow pings with no call in flight")
	f.DurationVar(&sp.Time, "time", sp.Time, "keepalive.ServerParameters.Time: ping a client idle this long (grpc-go: at least 1s)")
	f.DurationVar(&sp.Timeout, "timeout", sp.Timeout, "keepalive.ServerParameters.Timeout: close the connection when a ping is unanswered this long")
	f.DurationVar(&sp.MaxConnectionIdle, "max-connection-idle", 0, "keepalive.ServerParameters.MaxConnectionIdle: send GOAWAY to a connection without calls for this long (0: never)")
	ka.register(f, "accepts")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("listen"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"min-time": ep.MinTime, "time": sp.Time, "timeout": sp.Timeout, "max-connection-idle": sp.MaxConnectionIdle}); err != nil {
		return err
	}
	if err := ka.check(f); err != nil {
		return err
	}
	if sp.Time > 0 && sp.Time < time.Second {
		return usagef("agent grpc-server: --time %v is below grpc-go's minimum, 1s", sp.Time)
	}
	grpcLog()
	em := f.emitter(out)
	ln, err := listenTCP(ctx, em, listen, &ka)
	if err != nil {
		return err
	}
	gl := &grpcListener{Listener: ln, em: em, ka: &ka}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.KeepaliveEnforcementPolicy(ep), grpc.KeepaliveParams(sp))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "idlegate.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, cctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req []byte
			if err := dec(&req); err != nil {
				return nil, err
			}
			text := string(req)
			id, n := gl.call(cctx)
			em.Emit(Event{Conn: id, Event: EvRequest, Detail: "Echo " + text, N: count(n), Reused: boolp(n > 1)})
			if rest, ok := strings.CutPrefix(text, "slow "); ok {
				ds, after, _ := strings.Cut(rest, " ")
				d, err := time.ParseDuration(ds)
				if err != nil {
					return nil, status.Errorf(codes.InvalidArgument, "slow %q: not a duration", ds)
				}
				if !sleep(cctx, d) {
					return nil, status.FromContextError(cctx.Err()).Err()
				}
				req = []byte(after)
			}
			return &req, nil
		}}},
	}, struct{}{})
	stop := context.AfterFunc(ctx, func() {
		gl.stopping.Store(true)
		srv.Stop()
	})
	defer stop()
	err = srv.Serve(gl)
	if ctx.Err() != nil || errors.Is(err, grpc.ErrServerStopped) {
		gl.wait()
		return nil
	}
	em.Emit(Event{Event: EvError, Op: "accept", Err: Errno(err), Detail: err.Error()})
	srv.Stop()
	gl.wait()
	return fmt.Errorf("serve grpc: %w", err)
}

// grpcListener names the server's TCP connections and reports their accept and close.
type grpcListener struct {
	net.Listener
	em       *Emitter
	ka       *keepaliveOpts
	n        atomic.Int64
	stopping atomic.Bool
	open     sync.WaitGroup

	mu    sync.Mutex           // guards conns and each one's calls
	conns map[string]*grpcConn // by remote address
}

func (l *grpcListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &grpcConn{Conn: c, l: l, id: fmt.Sprintf("c%d", l.n.Add(1))}
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[string]*grpcConn{}
	}
	l.conns[c.RemoteAddr().String()] = gc
	l.mu.Unlock()
	l.open.Add(1)
	l.em.Emit(Event{Conn: gc.id, Event: EvAccept, Detail: c.RemoteAddr().String()})
	l.ka.report(l.em, gc.id, c)
	return gc, nil
}

func (l *grpcListener) wait() { WaitTimeout(&l.open, 2*time.Second) }

// call finds the connection of a call by its peer address and counts the call on it.
func (l *grpcListener) call(ctx context.Context) (id string, n int) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conns[p.Addr.String()]
	if c == nil {
		return "", 1
	}
	c.calls++
	return c.id, c.calls
}

// grpcConn is a server connection that emits its close once, with the reason.
type grpcConn struct {
	net.Conn
	l     *grpcListener
	id    string
	once  sync.Once
	calls int // guarded by l.mu

	mu      sync.Mutex // guards readErr
	readErr error
}

func (c *grpcConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.mu.Lock()
		c.readErr = err
		c.mu.Unlock()
	}
	return n, err
}

func (c *grpcConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.mu.Lock()
		rerr := c.readErr
		c.mu.Unlock()
		why := "server closed"
		switch {
		case c.l.stopping.Load():
			why = "shutdown"
		case errors.Is(rerr, io.EOF):
			why = "eof"
		case rerr != nil && !errors.Is(rerr, net.ErrClosed):
			c.l.em.Emit(Event{Conn: c.id, Event: EvError, Op: "read", Err: Errno(rerr), Detail: rerr.Error()})
			why = closeReason(rerr)
		}
		c.l.em.Emit(Event{Conn: c.id, Event: EvClose, Detail: why})
		c.l.mu.Lock()
		delete(c.l.conns, c.RemoteAddr().String())
		c.l.mu.Unlock()
		c.l.open.Done()
	})
	return err
}

// GRPCClient is `grpc-client --connect ADDR:PORT [--pattern STEPS] [--time D] [--timeout D]
// [--permit-without-stream] [--deadline D] [--keepalive ...]`: a grpc-go client (one
// ClientConn) running the pattern: call:TEXT (a unary call answered at once), slow:D (a call
// the server answers after D, as a long query or a watch), idle:D (nothing). --time,
// --timeout and --permit-without-stream are keepalive.ClientParameters (grpc-go: no pings
// unless Time is set; Time below 10s is raised to 10s). TCP keepalive only with the
// keepalive flags (grpc-go's own dialer turns SO_KEEPALIVE on with the kernel's values,
// 2 h idle by default: --keepalive does the same).
//
// Events: keepalive (the ClientParameters, when set), connect and close as the channel's
// connection becomes ready and stops being ready (detail the new state), send per call
// (detail the request), recv per answer, error per failed call (op call, err the gRPC code:
// UNAVAILABLE, DEADLINE_EXCEEDED, ...), one result for the agent: survived, or the first
// failure's outcome (UNAVAILABLE: reset, DEADLINE_EXCEEDED: timed-out, else error); the
// pattern goes on after a failure.
func GRPCClient(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("grpc-client")
	var connect, pattern string
	var kp keepalive.ClientParameters
	var deadline time.Duration
	var ka keepaliveOpts
	kp.Timeout = 20 * time.Second // grpc-go's default
	f.StringVar(&connect, "connect", "", "ADDR:PORT of a grpc-server (required)")
	f.StringVar(&pattern, "pattern", "call:hello", "comma list of call:TEXT, slow:D, idle:D")
	f.DurationVar(&kp.Time, "time", 0, "keepalive.ClientParameters.Time: ping after this long without activity (0: never; grpc-go raises it to at least 10s)")
	f.DurationVar(&kp.Timeout, "timeout", kp.Timeout, "keepalive.ClientParameters.Timeout: close the connection when a ping is unanswered this long")
	f.BoolVar(&kp.PermitWithoutStream, "permit-without-stream", false, "keepalive.ClientParameters.PermitWithoutStream: ping with no call in flight too")
	f.DurationVar(&deadline, "deadline", 0, "each call's deadline (0: none): a call unanswered then fails DEADLINE_EXCEEDED")
	ka.register(f, "dials")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("connect"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"time": kp.Time, "timeout": kp.Timeout, "deadline": deadline}); err != nil {
		return err
	}
	if err := ka.check(f); err != nil {
		return err
	}
	if kp.Time > 0 && kp.Time < 10*time.Second {
		return usagef("agent grpc-client: --time %v: grpc-go raises a keepalive time below 10s to 10s; give 10s or more", kp.Time)
	}
	steps, err := ParsePattern(pattern, "call", "slow", "idle")
	if err != nil {
		return usagef("agent grpc-client: --pattern: %v", err)
	}
	for _, st := range steps {
		if st.Op == "call" && strings.HasPrefix(st.Text, "slow ") {
			return usagef("agent grpc-client: --pattern: call:%s would ask for a slow answer; write slow:D", st.Text)
		}
	}
	grpcLog()
	em := f.emitter(out)
	d := ka.dialer()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	}
	if kp.Time > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(kp))
		em.Emit(Event{Event: EvKeepalive, Detail: fmt.Sprintf("grpc keepalive.ClientParameters{Time: %v, Timeout: %v, PermitWithoutStream: %v}", kp.Time, kp.Timeout, kp.PermitWithoutStream)})
	}
	cc, err := grpc.NewClient("passthrough:///"+connect, opts...)
	if err != nil {
		return usagef("agent grpc-client: --connect %q: %v", connect, err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchState(wctx, em, cc)
	}()
	var first *ending
	ok := 0
	for _, st := range steps {
		if ctx.Err() != nil {
			break
		}
		if st.Op == "idle" {
			em.Emit(Event{Event: EvIdle, Detail: st.D.String()})
			sleep(ctx, st.D)
			continue
		}
		req := st.Text
		if st.Op == "slow" {
			req = fmt.Sprintf("slow %v %s", st.D, "answer")
		}
		if end := grpcCall(ctx, em, cc, req, deadline); end != nil {
			if first == nil {
				first = end
			}
		} else {
			ok++
		}
	}
	stopWatch()
	<-watched
	cc.Close()
	res := ending{outcome: Survived}
	if first != nil {
		res = *first
	} else if ctx.Err() != nil {
		res = ending{outcome: Failed, err: "canceled", detail: "agent stopped"}
	}
	res.n = count(ok)
	em.result("", res)
	return nil
}

// grpcCall makes one call; nil means it was answered with its request (or, for a slow
// call, "answer").
func grpcCall(ctx context.Context, em *Emitter, cc *grpc.ClientConn, req string, deadline time.Duration) *ending {
	cctx := ctx
	if deadline > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	in := []byte(req)
	em.Emit(Event{Event: EvSend, N: count(len(in)), Detail: req})
	var reply []byte
	err := cc.Invoke(cctx, grpcEchoMethod, &in, &reply)
	if err == nil {
		em.Emit(Event{Event: EvRecv, N: count(len(reply)), Detail: string(reply)})
		return nil
	}
	st := status.Convert(err)
	code := grpcCodeName(st.Code())
	em.Emit(Event{Event: EvError, Op: "call", Err: code, Detail: st.Message()})
	outcome := Failed
	switch {
	case ctx.Err() != nil:
		return &ending{outcome: Hung, op: "call", detail: "agent stopped while a call was in flight"}
	case st.Code() == codes.Unavailable:
		outcome = Reset
	case st.Code() == codes.DeadlineExceeded:
		outcome = TimedOut
	}
	return &ending{outcome: outcome, op: "call", err: code, detail: st.Message()}
}

// grpcCodeName is the code as gRPC writes it: UNAVAILABLE, DEADLINE_EXCEEDED.
func grpcCodeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// watchState emits connect when the channel's connection becomes READY and close when it
// stops being READY, until ctx is done.
func watchState(ctx context.Context, em *Emitter, cc *grpc.ClientConn) {
	n := 0
	ready := false
	state := cc.GetState()
	for {
		if s := state == connectivity.Ready; s != ready {
			ready = s
			if ready {
				n++
				em.Emit(Event{Conn: fmt.Sprintf("c%d", n), Event: EvConnect, Detail: "channel READY"})
			} else {
				em.Emit(Event{Conn: fmt.Sprintf("c%d", n), Event: EvClose, Detail: "channel " + state.String()})
			}
		}
		if !cc.WaitForStateChange(ctx, state) {
			if ready {
				em.Emit(Event{Conn: fmt.Sprintf("c%d", n), Event: EvClose, Detail: "client done"})
			}
			return
		}
		state = cc.GetState()
	}
}
