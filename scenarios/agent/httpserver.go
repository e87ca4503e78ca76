package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPServer is `http-server --listen ADDR:PORT [--keepalive-timeout D] [--keepalive ...]`:
// HTTP/1.1 that answers every request with 200 and the body "ok\n", and closes a keep-alive
// connection idle for D (nginx keepalive_timeout; 0 keeps idle connections forever). A new
// connection that sends no request within D is closed too. Accepted connections have TCP
// keepalive only with the keepalive flags (keepaliveOpts).
//
// Events: listening, accept, request (per request: detail "METHOD URI STATUS", n the request's
// number on its connection, reused true from the second one), close (detail "server idle
// timeout", "eof" when the client closed, "server closed", "shutdown", "error ERRNO").
func HTTPServer(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("http-server")
	var listen string
	// Default: nginx's keepalive_timeout, 75 s.
	keepalive := 75 * time.Second
	f.StringVar(&listen, "listen", "", "ADDR:PORT to listen on (required)")
	f.DurationVar(&keepalive, "keepalive-timeout", keepalive, "close keep-alive connections idle for this long (0: never)")
	var ka keepaliveOpts
	ka.register(f, "accepts")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("listen"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"keepalive-timeout": keepalive}); err != nil {
		return err
	}
	if err := ka.check(f); err != nil {
		return err
	}
	em := f.emitter(out)
	ln, err := listenTCP(ctx, em, listen, &ka)
	if err != nil {
		return err
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return serveHTTP(ctx, em, ln, keepalive, &ka, ok, true)
}

// httpConn is a server-side connection that remembers its last read error, so that its
// `close` event can say why it closed.
type httpConn struct {
	net.Conn
	id string

	mu       sync.Mutex     // guards the fields below
	lastErr  error          // error of the last read; nil after a read that returned data
	state    http.ConnState // the last state reported by the server
	requests int            // requests served
}

func (c *httpConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil || n > 0 {
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
	}
	return n, err
}

type httpListener struct {
	net.Listener
	n atomic.Int64
}

func (l *httpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &httpConn{Conn: c, id: fmt.Sprintf("c%d", l.n.Add(1))}, nil
}

type connKey struct{}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// serveHTTP serves h on ln until ctx is cancelled, with idle keep-alive connections closed
// after keepalive (0: never). It emits accept (and keepalive, as ka reports it) and close per
// connection, and request per request if logRequests. It returns once every connection's
// close event is out.
func serveHTTP(ctx context.Context, em *Emitter, ln net.Listener, keepalive time.Duration, ka *keepaliveOpts, h http.Handler, logRequests bool) error {
	var stopping atomic.Bool
	var conns sync.WaitGroup
	srv := &http.Server{
		// IdleTimeout bounds the wait for the next request on a keep-alive connection and
		// ReadHeaderTimeout the wait for the first one: the server's read deadline expires
		// and net/http closes the connection.
		IdleTimeout:       keepalive,
		ReadHeaderTimeout: keepalive,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(c net.Conn, state http.ConnState) {
			hc := c.(*httpConn)
			switch state {
			case http.StateNew:
				conns.Add(1)
				em.Emit(Event{Conn: hc.id, Event: EvAccept, Detail: c.RemoteAddr().String()})
				ka.report(em, hc.id, hc.Conn)
			case http.StateActive, http.StateIdle:
				hc.mu.Lock()
				hc.state = state
				hc.mu.Unlock()
			case http.StateClosed, http.StateHijacked:
				hc.mu.Lock()
				err, prev := hc.lastErr, hc.state
				hc.mu.Unlock()
				var why string
				switch {
				case stopping.Load():
					why = "shutdown"
				case isTimeout(err) && (prev == http.StateIdle || prev == http.StateNew):
					why = "server idle timeout"
				case errors.Is(err, io.EOF):
					why = "eof"
				case err != nil && !isTimeout(err) && !errors.Is(err, net.ErrClosed):
					em.Emit(Event{Conn: hc.id, Event: EvError, Op: "read", Err: Errno(err), Detail: err.Error()})
					why = closeReason(err)
				default:
					why = "server closed"
				}
				em.Emit(Event{Conn: hc.id, Event: EvClose, Detail: why})
				conns.Done()
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hc := r.Context().Value(connKey{}).(*httpConn)
			sw := &statusWriter{ResponseWriter: w}
			h.ServeHTTP(sw, r)
			if !logRequests {
				return
			}
			hc.mu.Lock()
			hc.requests++
			n := hc.requests
			hc.mu.Unlock()
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			em.Emit(Event{Conn: hc.id, Event: EvRequest, Detail: fmt.Sprintf("%s %s %d", r.Method, r.URL.RequestURI(), sw.status),
				N: count(n), Reused: boolp(n > 1)})
		}),
	}
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		srv.Close()
	})
	defer stop()
	err := srv.Serve(&httpListener{Listener: ln})
	if !errors.Is(err, http.ErrServerClosed) {
		em.Emit(Event{Event: EvError, Op: "accept", Err: Errno(err), Detail: err.Error()})
		stopping.Store(true)
		srv.Close()
	}
	WaitTimeout(&conns, 2*time.Second)
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}
