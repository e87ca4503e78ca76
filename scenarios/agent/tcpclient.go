package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpClientOpts are the flags of tcp-client.
type tcpClientOpts struct {
	connect     string
	conns       int
	steps       []Step
	ka          keepaliveOpts
	userTimeout time.Duration // TCP_USER_TIMEOUT; 0: not set
	heartbeat   time.Duration // ping period during idle and hold steps; 0: no heartbeat
	hbMisses    int           // consecutive unanswered pings that declare the peer dead
	readTimeout time.Duration // deadline of each read waiting for an echo; 0: none
	hangAfter   time.Duration // a dial, write or echo read still blocked after this is hung
}

// TCPClient is `tcp-client --connect ADDR:PORT [--conns N] [--pattern STEPS]
// [--keepalive] [--keepalive-idle D --keepalive-intvl D --keepalive-cnt K] [--user-timeout D]
// [--heartbeat D --heartbeat-misses K] [--read-timeout D] [--hang-after D]`.
//
// Each of the --conns connections (c1, c2, ...) runs the pattern on its own:
//   - send:TEXT writes TEXT and a newline and waits for the echoed line;
//   - write:TEXT writes without waiting (its echo is consumed by a later step);
//   - await:TEXT reads until the line TEXT comes (the echo of an earlier write), within
//     --read-timeout and --hang-after as send's wait;
//   - shut:write shuts down the sending half (a FIN; shutdown(SHUT_WR)): the connection is
//     half-closed, the peer may still answer;
//   - idle:D does nothing on the socket for D: a failure shows at the next operation;
//   - hold:D blocks in a read for D: a RST, a FIN or the kernel giving up (keepalive,
//     TCP_USER_TIMEOUT) ends it at once, data received is reported.
//
// With --heartbeat, idle and hold steps send "ping\n" every D and read the echo; a ping still
// unanswered when the next is due is a miss, and K consecutive misses end the connection
// with outcome dead. Without keepalive flags SO_KEEPALIVE is off (Go's 15 s default is
// disabled); any keepalive flag turns it on, leaving the kernel's default for the others
// (--keepalive alone: all three from the namespace's sysctls).
func TCPClient(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("tcp-client")
	var o tcpClientOpts
	var pattern string
	f.StringVar(&o.connect, "connect", "", "ADDR:PORT of the server (required)")
	f.IntVar(&o.conns, "conns", 1, "parallel connections, each running the pattern")
	f.StringVar(&pattern, "pattern", "send:hello", "comma list of send:TEXT, write:TEXT, await:TEXT, shut:write, idle:D, hold:D")
	o.ka.register(f, "dials")
	f.DurationVar(&o.userTimeout, "user-timeout", 0, "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged")
	f.DurationVar(&o.heartbeat, "heartbeat", 0, "send an application ping every D during idle and hold steps")
	f.IntVar(&o.hbMisses, "heartbeat-misses", 3, "consecutive missed heartbeats that declare the peer dead")
	f.DurationVar(&o.readTimeout, "read-timeout", 0, "give up a read waiting for an echo after D (outcome timed-out)")
	f.DurationVar(&o.hangAfter, "hang-after", 0, "declare a dial, write or echo read still blocked after D hung")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("connect"); err != nil {
		return err
	}
	if err := o.ka.check(f); err != nil {
		return err
	}
	if err := f.nonNegative(map[string]time.Duration{"user-timeout": o.userTimeout, "heartbeat": o.heartbeat, "read-timeout": o.readTimeout, "hang-after": o.hangAfter}); err != nil {
		return err
	}
	switch {
	case o.conns < 1:
		return usagef("agent tcp-client: --conns %d must be at least 1", o.conns)
	case o.hbMisses < 1:
		return usagef("agent tcp-client: --heartbeat-misses %d must be at least 1", o.hbMisses)
	case o.userTimeout > 0 && o.userTimeout < time.Millisecond:
		return usagef("agent tcp-client: --user-timeout %v is below the option's unit, 1ms", o.userTimeout)
	}
	var err error
	if o.steps, err = ParsePattern(pattern, "send", "write", "await", "shut", "idle", "hold"); err != nil {
		return usagef("agent tcp-client: --pattern: %v", err)
	}
	for _, st := range o.steps {
		if st.Op == "shut" && st.Text != "write" {
			return usagef("agent tcp-client: --pattern: shut:%s: only the sending half can be shut down: write shut:write", st.Text)
		}
	}
	em := f.emitter(out)
	raddr, err := net.ResolveTCPAddr("tcp", o.connect)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return fmt.Errorf("resolve %s: %w", o.connect, err)
	}
	o.connect = raddr.String()
	var wg sync.WaitGroup
	for i := 1; i <= o.conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &tcpConn{o: &o, em: em, ctx: ctx, id: fmt.Sprintf("c%d", i)}
			end, why := k.run()
			if k.c != nil {
				k.c.Close()
				em.Emit(Event{Conn: k.id, Event: EvClose, Detail: why})
			}
			em.result(k.id, end)
		}()
	}
	wg.Wait()
	return nil
}

// tcpConn is one connection of tcp-client; only its goroutine uses it.
type tcpConn struct {
	o   *tcpClientOpts
	em  *Emitter
	ctx context.Context
	id  string
	c   *net.TCPConn
	dl  *deadlines // c's deadlines, in the past once ctx is done

	buf       []byte      // bytes read and not yet returned as a line
	pings     []time.Time // send times of unanswered heartbeat pings, oldest first
	misses    int         // consecutive missed heartbeats
	exchanges int         // send steps whose echo came back
}

// run dials and runs the pattern; it returns the ending and the `close` detail.
func (k *tcpConn) run() (ending, string) {
	if end, ok := k.dial(); !ok {
		return end, ""
	}
	k.dl = watchDeadlines(k.ctx, k.c)
	defer k.dl.release()
	for _, st := range k.o.steps {
		var end *ending
		switch st.Op {
		case "send", "write":
			end = k.send(st.Text, st.Op == "send")
		case "await":
			end = k.await(st.Text)
		case "shut":
			if err := k.c.CloseWrite(); err != nil {
				e := k.fail("write", err, false)
				end = &e
			} else {
				k.em.Emit(Event{Conn: k.id, Event: EvShutdown, Detail: "sending half shut down (FIN)"})
			}
		case "idle", "hold":
			end = k.wait(st.D, st.Op == "hold")
		}
		if end != nil {
			return *end, endCloseDetail(*end)
		}
	}
	return ending{outcome: Survived, n: count(k.exchanges)}, "client done"
}

// endCloseDetail is the `close` detail of a connection that ended early.
func endCloseDetail(end ending) string {
	switch end.outcome {
	case Closed:
		return "eof"
	case Dead:
		return "heartbeat dead"
	case Hung:
		return "client gave up (hang-after)"
	}
	if end.err != "" {
		return "error " + end.err
	}
	return "client stopped"
}

func (k *tcpConn) dial() (ending, bool) {
	o := k.o
	d := o.ka.dialer()
	if o.userTimeout > 0 {
		d.Control = userTimeoutControl(o.userTimeout)
	}
	dctx := k.ctx
	if o.hangAfter > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(k.ctx, o.hangAfter)
		defer cancel()
	}
	c, err := d.DialContext(dctx, "tcp", o.connect)
	switch {
	case err == nil:
	case k.ctx.Err() != nil:
		return ending{outcome: Hung, op: "dial", detail: "agent stopped while blocked in dial"}, false
	case o.hangAfter > 0 && isTimeout(err): // our only dial deadline; ctx may not say so yet
		return ending{outcome: Hung, op: "dial", detail: fmt.Sprintf("dial still blocked after %v (--hang-after)", o.hangAfter)}, false
	default:
		k.em.Emit(Event{Conn: k.id, Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return failed("dial", err), false
	}
	k.c = c.(*net.TCPConn)
	k.em.Emit(Event{Conn: k.id, Event: EvConnect, Detail: c.LocalAddr().String() + " -> " + c.RemoteAddr().String()})
	if o.ka.enabled() || o.userTimeout > 0 {
		k.em.Emit(Event{Conn: k.id, Event: EvKeepalive, Detail: sockopts(k.c)})
	}
	return ending{}, true
}

// userTimeoutControl sets TCP_USER_TIMEOUT (milliseconds) before connect.
func userTimeoutControl(d time.Duration) func(string, string, syscall.RawConn) error {
	ms := int(d / time.Millisecond)
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt TCP_USER_TIMEOUT", serr)
	}
}

// sockopts reads back the keepalive options the kernel holds for c.
func sockopts(c *net.TCPConn) string {
	rc, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var s string
	rc.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil {
				return -1
			}
			return v
		}
		s = fmt.Sprintf("SO_KEEPALIVE=%d TCP_KEEPIDLE=%ds TCP_KEEPINTVL=%ds TCP_KEEPCNT=%d TCP_USER_TIMEOUT=%dms",
			get(unix.SOL_SOCKET, unix.SO_KEEPALIVE), get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
			get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL), get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
			get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT))
	})
	return s
}

// after returns now+d, or no deadline for d == 0.
func after(d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// readDeadline is the deadline of a read waiting for an echo, and whether it is
// --hang-after's (hung) rather than --read-timeout's (timed-out).
func (k *tcpConn) readDeadline() (time.Time, bool) {
	rt, ha := after(k.o.readTimeout), after(k.o.hangAfter)
	if !ha.IsZero() && (rt.IsZero() || ha.Before(rt)) {
		return ha, true
	}
	return rt, false
}

// readLine returns the next line received, without its newline, reading until deadline t
// (zero: none). Bytes of a partial line are kept for the next call.
func (k *tcpConn) readLine(t time.Time) (string, error) {
	var tmp [4096]byte
	for {
		if i := bytes.IndexByte(k.buf, '\n'); i >= 0 {
			line := string(k.buf[:i])
			k.buf = append(k.buf[:0], k.buf[i+1:]...)
			return line, nil
		}
		k.dl.setRead(t)
		n, err := k.c.Read(tmp[:])
		k.buf = append(k.buf, tmp[:n]...)
		if err != nil && bytes.IndexByte(k.buf, '\n') < 0 {
			return "", err
		}
	}
}

// line accounts for a received line: the answer to a heartbeat, or echoed data (true).
func (k *tcpConn) line(s string) bool {
	if (s == "ping" || s == "pong") && len(k.pings) > 0 {
		rtt := time.Since(k.pings[0])
		k.pings = k.pings[1:]
		k.misses = 0
		k.em.Emit(Event{Conn: k.id, Event: EvHeartbeat, Detail: "rtt " + rtt.Round(time.Microsecond).String()})
		return false
	}
	k.em.Emit(Event{Conn: k.id, Event: EvRecv, N: count(len(s) + 1)})
	return true
}

// fail is the ending of an operation that returned err; hang says whether a timeout is
// --hang-after's deadline.
func (k *tcpConn) fail(op string, err error, hang bool) ending {
	switch {
	case k.ctx.Err() != nil:
		return ending{outcome: Hung, op: op, detail: "agent stopped while blocked in " + op}
	case hang && isTimeout(err):
		return ending{outcome: Hung, op: op, detail: fmt.Sprintf("%s still blocked after %v (--hang-after)", op, k.o.hangAfter)}
	case errors.Is(err, io.EOF):
		return ending{outcome: Closed, op: op, err: "EOF", detail: "the peer closed the connection"}
	}
	k.em.Emit(Event{Conn: k.id, Event: EvError, Op: op, Err: Errno(err), Detail: err.Error()})
	return failed(op, err)
}

// send writes text and, if wait, reads lines until its echo comes back.
func (k *tcpConn) send(text string, wait bool) *ending {
	k.dl.setWrite(after(k.o.hangAfter))
	n, err := k.c.Write([]byte(text + "\n"))
	if err != nil {
		e := k.fail("write", err, true)
		return &e
	}
	k.em.Emit(Event{Conn: k.id, Event: EvSend, N: count(n)})
	if !wait {
		return nil
	}
	return k.await(text)
}

// await reads lines until text comes back.
func (k *tcpConn) await(text string) *ending {
	dl, hang := k.readDeadline()
	for {
		line, err := k.readLine(dl)
		if err != nil {
			e := k.fail("read", err, hang)
			return &e
		}
		if k.line(line) && line == text {
			k.exchanges++
			return nil
		}
	}
}

// wait runs an idle or hold step of length d.
func (k *tcpConn) wait(d time.Duration, hold bool) *ending {
	k.em.Emit(Event{Conn: k.id, Event: EvIdle, Detail: d.String()})
	if k.o.heartbeat > 0 {
		return k.heartbeatWait(d)
	}
	if !hold {
		if !sleep(k.ctx, d) {
			return &ending{outcome: Failed, err: "canceled", detail: "agent stopped during idle"}
		}
		return nil
	}
	end := time.Now().Add(d)
	for {
		line, err := k.readLine(end)
		switch {
		case err == nil:
			k.line(line)
		case isTimeout(err) && k.ctx.Err() == nil:
			return nil // held for d
		default:
			e := k.fail("read", err, false)
			return &e
		}
	}
}

// heartbeatWait reads for d, sending a ping every heartbeat period and counting misses.
func (k *tcpConn) heartbeatWait(d time.Duration) *ending {
	hb := k.o.heartbeat
	end := time.Now().Add(d)
	next := time.Now().Add(hb)
	for time.Now().Before(end) {
		dl := next
		if end.Before(dl) {
			dl = end
		}
		line, err := k.readLine(dl)
		if err == nil {
			k.line(line)
			continue
		}
		if !isTimeout(err) || k.ctx.Err() != nil {
			e := k.fail("heartbeat", err, false)
			return &e
		}
		if time.Now().Before(next) {
			continue
		}
		if len(k.pings) > 0 {
			k.misses++
			k.em.Emit(Event{Conn: k.id, Event: EvHeartbeatMiss, N: count(k.misses), Detail: fmt.Sprintf("no answer to ping within %v", hb)})
			if k.misses >= k.o.hbMisses {
				return &ending{outcome: Dead, op: "heartbeat", detail: fmt.Sprintf("%d consecutive heartbeats missed", k.misses)}
			}
		}
		k.dl.setWrite(after(k.o.hangAfter))
		if _, err := k.c.Write([]byte("ping\n")); err != nil {
			e := k.fail("heartbeat", err, true)
			return &e
		}
		k.pings = append(k.pings, time.Now())
		next = next.Add(hb)
	}
	return nil
}
