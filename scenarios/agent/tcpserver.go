package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// TCPEchoServer is `tcp-echo-server --listen ADDR:PORT [--idle-close D] [--delay D]
// [--keepalive ...]`: it echoes every byte it receives (with --delay, D after it came: a slow
// answer); with --idle-close it closes a connection that sent nothing for D itself, as a
// server keepalive_timeout does. Accepted connections have TCP keepalive only
// with the keepalive flags (keepaliveOpts). It stops when ctx is cancelled.
//
// Events: listening (detail: the bound address), accept, keepalive (with keepalive flags),
// recv (n bytes, echoed), error, close (detail "eof", "server idle timeout", "error ERRNO" or
// "shutdown").
func TCPEchoServer(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("tcp-echo-server")
	var listen string
	var idleClose, delay time.Duration
	var ka keepaliveOpts
	f.StringVar(&listen, "listen", "", "ADDR:PORT to listen on (required)")
	f.DurationVar(&idleClose, "idle-close", 0, "close a connection idle for this long (0: never)")
	f.DurationVar(&delay, "delay", 0, "echo each chunk this long after receiving it, as a slow query (0: at once)")
	ka.register(f, "accepts")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("listen"); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"idle-close": idleClose, "delay": delay}); err != nil {
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
	srv := &connServer{em: em, ka: &ka}
	return srv.serve(ctx, ln, func(id string, c net.Conn) string {
		return echo(ctx, em, id, c, idleClose, delay, srv.stopping)
	})
}

// listenTCP listens and emits `listening`, or emits the error and returns it (exit 1).
// Accepted connections have the keepalive ka asks for, and none without flags.
func listenTCP(ctx context.Context, em *Emitter, addr string, ka *keepaliveOpts) (net.Listener, error) {
	lc := ka.listenConfig()
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "listen", Err: Errno(err), Detail: err.Error()})
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	em.Emit(Event{Event: EvListening, Detail: ln.Addr().String()})
	return ln, nil
}

// connServer accepts connections and runs one handler per connection until ctx is
// cancelled, then closes the listener and every connection and waits for the handlers.
type connServer struct {
	em *Emitter
	ka *keepaliveOpts // the accepted connections' keepalive, reported when on

	mu    sync.Mutex // guards conns and done
	conns map[net.Conn]bool
	done  bool
}

// stopping reports whether the server is shutting down.
func (s *connServer) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// serve runs handle for each accepted connection; handle returns the `close` detail and
// serve closes the connection and emits `close`.
func (s *connServer) serve(ctx context.Context, ln net.Listener, handle func(id string, c net.Conn) string) error {
	s.conns = map[net.Conn]bool{}
	shutdown := func() {
		s.mu.Lock()
		s.done = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		ln.Close()
	}
	stop := context.AfterFunc(ctx, shutdown)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 1; ; n++ {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping() || ctx.Err() != nil {
				return nil
			}
			s.em.Emit(Event{Event: EvError, Op: "accept", Err: Errno(err), Detail: err.Error()})
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				n-- // out of descriptors or an aborted handshake: keep serving
				time.Sleep(50 * time.Millisecond)
				continue
			}
			shutdown()
			wg.Wait()
			return fmt.Errorf("accept: %w", err)
		}
		id := fmt.Sprintf("c%d", n)
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.em.Emit(Event{Conn: id, Event: EvAccept, Detail: c.RemoteAddr().String()})
		s.ka.report(s.em, id, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			reason := handle(id, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.em.Emit(Event{Conn: id, Event: EvClose, Detail: reason})
		}()
	}
}

// echo copies c back to itself, each chunk delay after it came, and returns why it
// stopped. A peer that shut down its sending half still gets the echo of what it sent
// before: the connection closes after it.
func echo(ctx context.Context, em *Emitter, id string, c net.Conn, idleClose, delay time.Duration, stopping func() bool) string {
	buf := make([]byte, 32<<10)
	for {
		if idleClose > 0 {
			c.SetReadDeadline(time.Now().Add(idleClose))
		}
		n, err := c.Read(buf)
		if n > 0 {
			em.Emit(Event{Conn: id, Event: EvRecv, N: count(n)})
			if delay > 0 && !sleep(ctx, delay) {
				return "shutdown"
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				if stopping() {
					return "shutdown"
				}
				em.Emit(Event{Conn: id, Event: EvError, Op: "write", Err: Errno(werr), Detail: werr.Error()})
				return closeReason(werr)
			}
		}
		switch {
		case err == nil:
		case stopping():
			return "shutdown"
		case isTimeout(err):
			return "server idle timeout"
		case errors.Is(err, io.EOF):
			return "eof"
		default:
			em.Emit(Event{Conn: id, Event: EvError, Op: "read", Err: Errno(err), Detail: err.Error()})
			return closeReason(err)
		}
	}
}
