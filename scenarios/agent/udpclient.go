package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// UDPClient is `udp-client --connect ADDR:PORT [--pattern STEPS] [--reply-timeout D]` on one
// connected UDP socket (one flow for the gateway): send:TEXT sends TEXT and waits up to D for
// the same datagram back, write:TEXT sends without waiting, idle:D waits.
//
// Events (agent-level, conn ""): connect, send, recv, idle, error (op read err timeout when a
// reply did not come, ECONNREFUSED or EHOSTUNREACH when ICMP came back), and one result:
// survived if every reply came, else the outcome of the first failure (timed-out, refused,
// ...). The pattern runs to its end whatever happens. n is the number of replies received.
func UDPClient(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("udp-client")
	var connect, pattern string
	replyTimeout := time.Second
	f.StringVar(&connect, "connect", "", "ADDR:PORT of the server (required)")
	f.StringVar(&pattern, "pattern", "send:hello", "comma list of send:TEXT, write:TEXT, idle:D")
	f.DurationVar(&replyTimeout, "reply-timeout", replyTimeout, "wait for each reply at most this long")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("connect"); err != nil {
		return err
	}
	if replyTimeout <= 0 {
		return usagef("agent udp-client: --reply-timeout %v must be positive", replyTimeout)
	}
	steps, err := ParsePattern(pattern, "send", "write", "idle")
	if err != nil {
		return usagef("agent udp-client: --pattern: %v", err)
	}
	em := f.emitter(out)
	raddr, err := net.ResolveUDPAddr("udp", connect)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return fmt.Errorf("resolve %s: %w", connect, err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return fmt.Errorf("dial %s: %w", connect, err)
	}
	defer c.Close()
	dl := watchDeadlines(ctx, c)
	defer dl.release()
	em.Emit(Event{Event: EvConnect, Detail: c.LocalAddr().String() + " -> " + c.RemoteAddr().String()})

	var first *ending
	replies := 0
	fail := func(op string, err error) {
		em.Emit(Event{Event: EvError, Op: op, Err: Errno(err), Detail: err.Error()})
		if first == nil {
			end := failed(op, err)
			first = &end
		}
	}
	buf := make([]byte, 64<<10)
steps:
	for _, st := range steps {
		if ctx.Err() != nil {
			break
		}
		if st.Op == "idle" {
			em.Emit(Event{Event: EvIdle, Detail: st.D.String()})
			sleep(ctx, st.D)
			continue
		}
		n, err := c.Write([]byte(st.Text))
		if err != nil {
			if ctx.Err() != nil {
				break steps
			}
			fail("write", err)
			continue
		}
		em.Emit(Event{Event: EvSend, N: count(n)})
		if st.Op == "write" {
			continue
		}
		dl.setRead(time.Now().Add(replyTimeout))
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					break steps
				}
				if isTimeout(err) {
					err = fmt.Errorf("no reply to %q within %v: %w", st.Text, replyTimeout, err)
				}
				fail("read", err)
				break
			}
			em.Emit(Event{Event: EvRecv, N: count(n)})
			if string(buf[:n]) == st.Text { // else a late reply to an earlier send
				replies++
				break
			}
		}
	}
	res := ending{outcome: Survived}
	switch {
	case first != nil:
		res = *first
	case ctx.Err() != nil:
		res = ending{outcome: Failed, err: "canceled", detail: "agent stopped"}
	}
	res.n = count(replies)
	em.result("", res)
	return nil
}
