package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Churn is `churn --connect ADDR:PORT --count N [--rate R/s] [--hold D] [--timeout D]`: it
// opens N short TCP connections (c1 ... cN) to an echo server to fill a connection table.
// Each sends one line, reads its echo and closes, or with --hold keeps the connection open
// for D in a blocked read first (a RST or FIN during the hold is a failure). --rate spaces
// the connection attempts (R/s or R/m; default: as fast as possible, 32 at a time without
// --hold); --timeout bounds each connect and echo.
//
// Events: connect and close per connection, error per failure (op dial, write or read; a
// FIN during --hold is close detail "eof", not an error), and one agent-level result: n connections succeeded, outcome survived if all did, else the
// outcome of the first failure.
func Churn(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("churn")
	var connect, rateFlag string
	var total int
	var hold time.Duration
	timeout := 5 * time.Second
	f.StringVar(&connect, "connect", "", "ADDR:PORT of an echo server (required)")
	f.IntVar(&total, "count", 0, "connections to open (required)")
	f.StringVar(&rateFlag, "rate", "", "connection attempts per second (R/s) or minute (R/m); empty: as fast as possible")
	f.DurationVar(&hold, "hold", 0, "keep each connection open this long before closing it")
	f.DurationVar(&timeout, "timeout", timeout, "give up a connect or an echo after this long")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("connect"); err != nil {
		return err
	}
	if total < 1 {
		return usagef("agent churn: --count %d must be at least 1", total)
	}
	if hold < 0 || timeout <= 0 {
		return usagef("agent churn: --hold must not be negative and --timeout must be positive")
	}
	every, err := parseRate(rateFlag)
	if err != nil {
		return usagef("agent churn: --rate: %v", err)
	}
	em := f.emitter(out)
	raddr, err := net.ResolveTCPAddr("tcp", connect)
	if err != nil {
		em.Emit(Event{Event: EvError, Op: "dial", Err: Errno(err), Detail: err.Error()})
		return fmt.Errorf("resolve %s: %w", connect, err)
	}
	limit := 32
	if hold > 0 {
		limit = total
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards first and ok
	var first *ending
	ok := 0
	start := time.Now()
launch:
	for i := 1; i <= total; i++ {
		if every > 0 && !sleep(ctx, time.Until(start.Add(time.Duration(i-1)*every))) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			end := churnOne(ctx, em, raddr.String(), fmt.Sprintf("c%d", i), timeout, hold)
			mu.Lock()
			defer mu.Unlock()
			if end == nil {
				ok++
			} else if first == nil {
				first = end
			}
		}()
	}
	wg.Wait()
	res := ending{outcome: Survived}
	switch {
	case first != nil:
		res = *first
	case ok < total:
		res = ending{outcome: Failed, err: "canceled", detail: "agent stopped"}
	}
	res.n = count(ok)
	if res.detail == "" {
		res.detail = fmt.Sprintf("%d of %d connections succeeded", ok, total)
	}
	em.result("", res)
	return nil
}

// parseRate parses "R/s", "R/m" or "R" (per second) into the time between attempts; ""
// is 0, no pacing.
func parseRate(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	num, unit, _ := strings.Cut(s, "/")
	per := time.Second
	switch unit {
	case "", "s":
	case "m":
		per = time.Minute
	default:
		return 0, fmt.Errorf("%q: unit must be /s or /m", s)
	}
	r, err := strconv.ParseFloat(num, 64)
	if err != nil || r <= 0 {
		return 0, fmt.Errorf("%q is not a positive rate like 100/s", s)
	}
	return time.Duration(float64(per) / r), nil
}

// churnOne runs one connection; nil means it succeeded.
func churnOne(ctx context.Context, em *Emitter, addr, id string, timeout, hold time.Duration) *ending {
	why := "client done" // the close detail once connected
	fail := func(op string, err error) *ending {
		if ctx.Err() != nil {
			why = "shutdown"
			return &ending{outcome: Failed, op: op, err: "canceled", detail: "agent stopped"}
		}
		if errors.Is(err, io.EOF) {
			why = "eof"
		} else {
			why = closeReason(err)
			em.Emit(Event{Conn: id, Event: EvError, Op: op, Err: Errno(err), Detail: err.Error()})
		}
		end := failed(op, err)
		return &end
	}
	d := net.Dialer{KeepAlive: -1, Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("dial", err)
	}
	defer func() {
		c.Close()
		em.Emit(Event{Conn: id, Event: EvClose, Detail: why})
	}()
	dl := watchDeadlines(ctx, c)
	defer dl.release()
	em.Emit(Event{Conn: id, Event: EvConnect, Detail: c.LocalAddr().String() + " -> " + c.RemoteAddr().String()})
	msg := []byte("churn " + id + "\n")
	dl.set(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return fail("write", err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		return fail("read", err)
	}
	if hold == 0 {
		return nil
	}
	dl.set(time.Now().Add(hold))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		switch {
		case err == nil:
		case isTimeout(err) && ctx.Err() == nil:
			return nil
		default:
			return fail("read", err)
		}
	}
}
