package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPClient is `http-client --url URL [--requests N] [--interval D] [--idle-conn-timeout D]
// [--max-idle N] [--method M] [--hang-after D] [--keepalive ...]`: N requests, D apart, through
// one keep-alive pool (a Go http.Transport, no proxy from the environment, TCP keepalive only
// with the keepalive flags).
//
// Events: connect and close per pooled connection (c1, c2, ...; close detail "eof" when the
// server closed it, "client idle timeout", "client done", "client closed", "error ERRNO"),
// idle before each wait, request per successful request (detail the status, reused from
// httptrace GotConnInfo.Reused, n the request's number), error per failed request (op dial,
// write or read), and one result for the agent: survived if every request succeeded, else the
// outcome of the first failure; hung if a request was still unanswered after --hang-after,
// which ends the run. n is the number of successful requests.
//
// Go's Transport silently retries an idempotent request (GET, HEAD, ...) once on a fresh
// connection when a reused one fails before any response byte; the failed connection then
// shows as a close with "error ERRNO" or "eof" and the request as reused=false. Use
// --method POST to see the failure as an application without retries does.
func HTTPClient(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("http-client")
	var target, method string
	var requests, maxIdle int
	var interval, hangAfter time.Duration
	// Defaults: Go's http.DefaultTransport (IdleConnTimeout 90 s, 2 idle connections per host).
	idleConnTimeout := 90 * time.Second
	f.StringVar(&target, "url", "", "http:// URL to request (required)")
	f.IntVar(&requests, "requests", 1, "number of requests")
	f.DurationVar(&interval, "interval", time.Second, "wait between requests")
	f.DurationVar(&idleConnTimeout, "idle-conn-timeout", idleConnTimeout, "close pooled connections idle for this long (0: never)")
	f.IntVar(&maxIdle, "max-idle", http.DefaultMaxIdleConnsPerHost, "idle connections kept in the pool (0: no keep-alive)")
	f.StringVar(&method, "method", http.MethodGet, "request method; POST is never retried by the Transport")
	f.DurationVar(&hangAfter, "hang-after", 0, "declare a request still unanswered after D hung and stop (0: wait forever)")
	var ka keepaliveOpts
	ka.register(f, "dials")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := ka.check(f); err != nil {
		return err
	}
	if err := f.required("url"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"interval": interval, "idle-conn-timeout": idleConnTimeout, "hang-after": hangAfter}); err != nil {
		return err
	}
	if u, err := url.Parse(target); err != nil || u.Scheme != "http" || u.Host == "" {
		return usagef("agent http-client: --url %q is not an http:// URL", target)
	}
	if requests < 1 || maxIdle < 0 {
		return usagef("agent http-client: --requests must be at least 1 and --max-idle not negative")
	}
	method = strings.ToUpper(method)
	em := f.emitter(out)
	c := &httpClient{em: em, idleTimeout: idleConnTimeout, ka: &ka}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         c.dial,
		MaxIdleConns:        maxIdle,
		MaxIdleConnsPerHost: maxIdle,
		DisableKeepAlives:   maxIdle == 0,
		IdleConnTimeout:     idleConnTimeout,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var first *ending
	ok := 0
	for i := 1; i <= requests; i++ {
		if i > 1 && interval > 0 {
			em.Emit(Event{Event: EvIdle, Detail: interval.String()})
			if !sleep(ctx, interval) {
				break
			}
		}
		end := c.do(ctx, client, method, target, i, hangAfter)
		if end == nil {
			ok++
			continue
		}
		if first == nil {
			first = end
		}
		if end.outcome == Hung || ctx.Err() != nil {
			break
		}
	}
	c.done.Store(true)
	tr.CloseIdleConnections()
	c.wait()
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

type httpClient struct {
	em          *Emitter
	ka          *keepaliveOpts
	idleTimeout time.Duration
	n           atomic.Int64
	done        atomic.Bool    // the run is over: closes are "client done"
	open        sync.WaitGroup // connections not yet closed
}

func (c *httpClient) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := c.ka.dialer()
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	pc := &pooledConn{Conn: conn, c: c, id: fmt.Sprintf("c%d", c.n.Add(1)), lastUse: time.Now()}
	c.open.Add(1)
	c.em.Emit(Event{Conn: pc.id, Event: EvConnect, Detail: conn.LocalAddr().String() + " -> " + conn.RemoteAddr().String()})
	c.ka.report(c.em, pc.id, conn)
	return pc, nil
}

// wait waits a moment for the Transport to close its connections.
func (c *httpClient) wait() { WaitTimeout(&c.open, time.Second) }

// do runs request i; it returns nil on success.
func (c *httpClient) do(ctx context.Context, client *http.Client, method, target string, i int, hangAfter time.Duration) *ending {
	rctx := ctx
	if hangAfter > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, hangAfter)
		defer cancel()
	}
	var mu sync.Mutex // the trace runs on the Transport's goroutines
	var conn *pooledConn
	var reused, wrote bool
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			conn, _ = info.Conn.(*pooledConn)
			reused, wrote = info.Reused, false
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			wrote = info.Err == nil
		},
	}
	var body io.Reader
	if method != http.MethodGet && method != http.MethodHead {
		body = strings.NewReader(fmt.Sprintf("request %d\n", i))
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), method, target, body)
	if err != nil {
		return &ending{outcome: Failed, err: err.Error(), detail: err.Error()}
	}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mu.Lock()
	id, op := "", "dial"
	if conn != nil {
		id, op = conn.id, "write"
		if wrote {
			op = "read"
		}
	}
	mu.Unlock()
	switch {
	case err == nil:
		c.em.Emit(Event{Conn: id, Event: EvRequest, Detail: resp.Status, N: count(i), Reused: boolp(reused)})
		return nil
	case ctx.Err() != nil:
		return &ending{outcome: Hung, op: op, detail: "agent stopped while waiting for request " + fmt.Sprint(i)}
	case rctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
		return &ending{outcome: Hung, op: op, detail: fmt.Sprintf("request %d still unanswered after %v (--hang-after)", i, hangAfter)}
	}
	c.em.Emit(Event{Conn: id, Event: EvError, Op: op, Err: Errno(err), Detail: err.Error(), N: count(i)})
	end := failed(op, err)
	return &end
}

// pooledConn is a client connection that reports its own close.
type pooledConn struct {
	net.Conn
	c  *httpClient
	id string

	mu      sync.Mutex // guards the fields below
	lastUse time.Time  // last read or write that moved data
	why     string     // first read failure: "eof" or "error ERRNO"
	closed  bool
}

func (p *pooledConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	p.mu.Lock()
	if n > 0 {
		p.lastUse = time.Now()
	}
	if err != nil && p.why == "" && !p.closed && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
		p.why = closeReason(err)
	}
	p.mu.Unlock()
	return n, err
}

func (p *pooledConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	p.mu.Lock()
	p.lastUse = time.Now()
	p.mu.Unlock()
	return n, err
}

func (p *pooledConn) Close() error {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	why := p.why
	idle := time.Since(p.lastUse)
	p.mu.Unlock()
	err := p.Conn.Close()
	if !first {
		return err
	}
	switch {
	case why != "":
	case p.c.done.Load():
		why = "client done"
	case p.c.idleTimeout > 0 && idle >= p.c.idleTimeout-p.c.idleTimeout/10:
		why = "client idle timeout"
	default:
		why = "client closed"
	}
	p.c.em.Emit(Event{Conn: p.id, Event: EvClose, Detail: why})
	p.c.open.Done()
	return err
}
