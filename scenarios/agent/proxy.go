package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is `proxy --listen ADDR:PORT --upstreams A:P,B:P,... --pool N [--idle-timeout D]
// [--upstream-timeout D] [--keepalive-timeout D]`: an HTTP/1.1 reverse proxy that sends
// requests round-robin over the upstreams and keeps at most N idle upstream connections in
// total, as nginx `upstream { keepalive N; }` does: a connection whose response is done goes
// back to the pool, and when the pool is full the least recently used idle connection is
// closed. A request takes the most recently used idle connection to its upstream if there is
// one, else dials. A pooled connection is closed when it has been idle for --idle-timeout
// (nginx keepalive_timeout, 60 s) or when the upstream closes it. A request that fails on a
// reused connection is retried once on a new connection (nginx gives a failed cached
// connection one more try); otherwise the client gets 502.
//
// Events: listening; accept and close of client connections (c1, ...); for upstream
// connections (u1, ...): dial (detail the upstream), reuse, request (detail "METHOD URI ->
// UPSTREAM STATUS", reused), error (op dial, write or read), close (detail "pool full", "idle
// timeout", "upstream closed", "pool disabled", "shutdown", "error ERRNO", ...).
func Proxy(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("proxy")
	var listen, upstreams string
	var size int
	// Defaults: nginx keepalive_timeout (upstream context) 60 s, proxy_read_timeout 60 s,
	// keepalive_timeout (http context) 75 s.
	idleTimeout, upstreamTimeout, keepalive := 60*time.Second, 60*time.Second, 75*time.Second
	f.StringVar(&listen, "listen", "", "ADDR:PORT to listen on (required)")
	f.StringVar(&upstreams, "upstreams", "", "comma list of upstream ADDR:PORT, used round-robin (required)")
	f.IntVar(&size, "pool", 0, "idle upstream connections kept in total (0: close after each request)")
	f.DurationVar(&idleTimeout, "idle-timeout", idleTimeout, "close pooled upstream connections idle for this long (0: never)")
	f.DurationVar(&upstreamTimeout, "upstream-timeout", upstreamTimeout, "give up connecting to or reading from an upstream after this long")
	f.DurationVar(&keepalive, "keepalive-timeout", keepalive, "close idle client keep-alive connections after this long (0: never)")
	var ka keepaliveOpts
	ka.register(f, "dials or accepts")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := ka.check(f); err != nil {
		return err
	}
	if err := f.required("listen", "upstreams"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"idle-timeout": idleTimeout, "keepalive-timeout": keepalive}); err != nil {
		return err
	}
	if size < 0 || upstreamTimeout <= 0 {
		return usagef("agent proxy: --pool must not be negative and --upstream-timeout must be positive")
	}
	p := &proxy{timeout: upstreamTimeout, ka: &ka}
	for _, u := range strings.Split(upstreams, ",") {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return usagef("agent proxy: --upstreams: %q is not ADDR:PORT", u)
		}
		p.upstreams = append(p.upstreams, u)
	}
	em := f.emitter(out)
	p.em = em
	p.pool = &upstreamPool{em: em, max: size, idleTimeout: idleTimeout}
	ln, err := listenTCP(ctx, em, listen, &ka)
	if err != nil {
		return err
	}
	err = serveHTTP(ctx, em, ln, keepalive, &ka, p, false)
	p.pool.shutdown()
	return err
}

type proxy struct {
	em        *Emitter
	upstreams []string
	timeout   time.Duration // connect and response deadline of an upstream exchange
	ka        *keepaliveOpts
	pool      *upstreamPool
	next      atomic.Uint64 // round-robin counter
	ids       atomic.Int64  // upstream connection ids
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the request body", http.StatusBadRequest)
		return
	}
	addr := p.upstreams[(p.next.Add(1)-1)%uint64(len(p.upstreams))]
	for attempt := 0; ; attempt++ {
		var uc *upConn
		if attempt == 0 {
			uc = p.pool.take(addr)
		}
		reused := uc != nil
		if reused {
			p.em.Emit(Event{Conn: uc.id, Event: EvReuse, Detail: addr})
		} else if uc, err = p.dial(r.Context(), addr); err != nil {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		retry, done := p.exchange(w, r, uc, addr, body, reused)
		if retry && attempt == 0 {
			continue
		}
		if !done {
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}
		return
	}
}

func (p *proxy) dial(ctx context.Context, addr string) (*upConn, error) {
	id := fmt.Sprintf("u%d", p.ids.Add(1))
	d := p.ka.dialer()
	d.Timeout = p.timeout
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		p.em.Emit(Event{Conn: id, Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return nil, err
	}
	p.em.Emit(Event{Conn: id, Event: EvDial, Detail: fmt.Sprintf("%s from %s", addr, c.LocalAddr())})
	p.ka.report(p.em, id, c)
	return &upConn{id: id, addr: addr, conn: c, br: bufio.NewReader(c)}, nil
}

// exchange forwards r over uc and the response to w. It reports whether the request may be
// retried (it failed before any response on a reused connection) and whether a response was
// sent to the client. uc ends closed or back in the pool.
func (p *proxy) exchange(w http.ResponseWriter, r *http.Request, uc *upConn, addr string, body []byte, reused bool) (retry, done bool) {
	u := *r.URL
	u.Scheme, u.Host = "http", addr
	out := &http.Request{Method: r.Method, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: r.Header.Clone(), Host: addr, ContentLength: int64(len(body))}
	removeHopHeaders(out.Header)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		out.Header.Add("X-Forwarded-For", host)
	}
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
	}
	uc.conn.SetDeadline(time.Now().Add(p.timeout))
	stop := context.AfterFunc(r.Context(), func() { uc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(op string, err error) {
		if r.Context().Err() != nil {
			p.pool.closeConn(uc, "client gone")
			return
		}
		p.em.Emit(Event{Conn: uc.id, Event: EvError, Op: op, Err: Errno(err), Detail: err.Error()})
		p.pool.closeConn(uc, closeReason(err))
	}
	if err := out.Write(uc.conn); err != nil {
		stop()
		fail("write", err)
		return reused, false
	}
	resp, err := http.ReadResponse(uc.br, out)
	if err != nil {
		stop()
		fail("read", err)
		return reused, false
	}
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	removeHopHeaders(h)
	w.WriteHeader(resp.StatusCode)
	_, cerr := io.Copy(w, resp.Body)
	resp.Body.Close()
	p.em.Emit(Event{Conn: uc.id, Event: EvRequest, Detail: fmt.Sprintf("%s %s -> %s %d", r.Method, r.URL.RequestURI(), addr, resp.StatusCode),
		Reused: boolp(reused)})
	switch {
	case !stop():
		p.pool.closeConn(uc, "client gone")
	case cerr != nil:
		fail("read", cerr)
	case resp.Close:
		p.pool.closeConn(uc, "upstream asked to close")
	case uc.br.Buffered() > 0:
		p.pool.closeConn(uc, "upstream sent unexpected data")
	default:
		uc.conn.SetDeadline(time.Time{})
		p.pool.put(uc)
	}
	return false, true
}

// upConn is a connection to an upstream. While it is in the pool, a monitor goroutine
// blocks in a read on it to notice the upstream closing it.
type upConn struct {
	id, addr string
	conn     net.Conn
	br       *bufio.Reader
	timer    *time.Timer   // the idle timeout while pooled
	monDone  chan struct{} // closed when the monitor's read returned
	monErr   error         // what the monitor's read returned; read after monDone
}

var errUnexpectedData = errors.New("upstream sent data on an idle connection")

// upstreamPool is the idle upstream connections, least recently used first.
type upstreamPool struct {
	em          *Emitter
	max         int
	idleTimeout time.Duration

	mu     sync.Mutex // guards idle and closed; a connection in idle belongs to the pool
	idle   []*upConn
	closed bool
}

// put returns uc to the pool, closing the least recently used idle connection if it is full.
func (p *upstreamPool) put(uc *upConn) {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		p.closeConn(uc, "shutdown")
		return
	case p.max == 0:
		p.mu.Unlock()
		p.closeConn(uc, "pool disabled")
		return
	}
	var evicted *upConn
	if len(p.idle) >= p.max {
		evicted = p.idle[0]
		p.idle = slices.Delete(p.idle, 0, 1)
	}
	uc.monDone, uc.monErr, uc.timer = make(chan struct{}), nil, nil
	if p.idleTimeout > 0 {
		uc.timer = time.AfterFunc(p.idleTimeout, func() { p.expire(uc) })
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
	go p.monitor(uc)
	if evicted != nil {
		p.closeConn(evicted, "pool full")
	}
}

// take removes and returns the most recently used idle connection to addr that is still
// open, or nil.
func (p *upstreamPool) take(addr string) *upConn {
	for {
		p.mu.Lock()
		var uc *upConn
		for i := len(p.idle) - 1; i >= 0; i-- {
			if p.idle[i].addr == addr {
				uc = p.idle[i]
				p.idle = slices.Delete(p.idle, i, i+1)
				break
			}
		}
		p.mu.Unlock()
		if uc == nil {
			return nil
		}
		if uc.timer != nil {
			uc.timer.Stop()
		}
		uc.conn.SetReadDeadline(aLongTimeAgo) // unblock the monitor
		<-uc.monDone
		if isTimeout(uc.monErr) {
			uc.conn.SetReadDeadline(time.Time{})
			return uc
		}
		p.closeConn(uc, idleCloseReason(uc.monErr))
	}
}

func (p *upstreamPool) removeLocked(uc *upConn) bool {
	i := slices.Index(p.idle, uc)
	if i < 0 {
		return false
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	return true
}

func (p *upstreamPool) expire(uc *upConn) {
	p.mu.Lock()
	in := p.removeLocked(uc)
	p.mu.Unlock()
	if in {
		p.closeConn(uc, "idle timeout")
	}
}

func (p *upstreamPool) monitor(uc *upConn) {
	defer close(uc.monDone)
	var b [1]byte
	n, err := uc.conn.Read(b[:])
	if n > 0 {
		err = errUnexpectedData
	}
	uc.monErr = err
	if isTimeout(err) { // take is reusing the connection
		return
	}
	p.mu.Lock()
	in := p.removeLocked(uc)
	p.mu.Unlock()
	if in {
		p.closeConn(uc, idleCloseReason(err))
	}
}

// idleCloseReason is the close detail of a pooled connection whose monitor read returned err.
func idleCloseReason(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "upstream closed"
	case errors.Is(err, errUnexpectedData):
		return err.Error()
	}
	return closeReason(err)
}

// closeConn closes a connection that nobody else holds and emits its close event.
func (p *upstreamPool) closeConn(uc *upConn, why string) {
	if uc.timer != nil {
		uc.timer.Stop()
	}
	uc.conn.Close()
	p.em.Emit(Event{Conn: uc.id, Event: EvClose, Detail: why})
}

// shutdown closes every idle connection; later puts close theirs.
func (p *upstreamPool) shutdown() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, uc := range idle {
		p.closeConn(uc, "shutdown")
	}
}
