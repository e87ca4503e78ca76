package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

var errDemoFailed = errors.New("the demo's outcomes did not happen as expected")

type demoOpts struct {
	name                     string
	timeout, idle, keepalive time.Duration
}

func newDemoCmd() *cobra.Command {
	o := demoOpts{name: "idlegate-demo", timeout: 5 * time.Second, idle: 7 * time.Second, keepalive: 2 * time.Second}
	c := &cobra.Command{
		Use:   "demo",
		Short: "The flagship story: an idle connection dies at the box, TCP keepalive saves it",
		Long: `Bring up a lab whose gateway forgets TCP connections idle for --timeout and answers
orphans with a RST, then tell two stories with real kernel TCP stacks:
  1. a connection idles for --idle, then writes: the gateway forgot it, the client gets a RST;
  2. the same with TCP keepalive every --keepalive: the probes keep the entry alive, the write is echoed.
Prints a timeline of both and exits 0 only if both outcomes happened.`,
		Example: "  sudo idlegate demo\n  sudo idlegate demo --timeout 3s --idle 5s --keepalive 1s",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.OutOrStdout(), o) },
	}
	nameFlag(c, &o.name)
	c.Flags().DurationVar(&o.timeout, "timeout", o.timeout, "the gateway's TCP established idle timeout")
	c.Flags().DurationVar(&o.idle, "idle", o.idle, "how long each connection stays idle")
	c.Flags().DurationVar(&o.keepalive, "keepalive", o.keepalive, "TCP_KEEPIDLE and TCP_KEEPINTVL of story 2")
	return c
}

// timeline collects lines from the client, the gateway and the server.
type timeline struct {
	mu    sync.Mutex
	lines []tlLine
}

type tlLine struct {
	at        time.Time
	who, what string
}

func (t *timeline) add(at time.Time, who, format string, a ...any) {
	t.mu.Lock()
	t.lines = append(t.lines, tlLine{at, who, fmt.Sprintf(format, a...)})
	t.mu.Unlock()
}

func (t *timeline) print(w io.Writer, from, to time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sort.SliceStable(t.lines, func(i, j int) bool { return t.lines[i].at.Before(t.lines[j].at) })
	fmt.Fprintf(w, "  %8s  %-7s  %s\n", "time", "who", "what")
	for _, l := range t.lines {
		if l.at.Before(from) || l.at.After(to) {
			continue
		}
		fmt.Fprintf(w, "  %7.3fs  %-7s  %s\n", l.at.Sub(from).Seconds(), l.who, l.what)
	}
}

func runDemo(w io.Writer, o demoOpts) error {
	if err := lab.CheckName(o.name); err != nil {
		return usageError{err}
	}
	if o.idle <= o.timeout || o.keepalive >= o.timeout {
		return usagef("the story needs --keepalive < --timeout < --idle (have %s, %s, %s)", o.keepalive, o.timeout, o.idle)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pol := policy.Default()
	pol.Timeouts.TCP.Established = policy.Duration(o.timeout)
	pol.Orphan = policy.OrphanReset
	pol.VerdictEvents = true
	fmt.Fprintf(w, "idlegate demo: a gateway that forgets TCP connections idle for %s and answers orphans with RST\n", o.timeout)
	run, err := gateway.StartLab(ctx, lab.Config{Name: o.name}, pol, gateway.LabOptions{})
	if err != nil {
		return err
	}
	defer run.Stop()
	fmt.Fprintf(w, "lab %q up: client %s in netns %s, server %s in netns %s\n\n",
		o.name, lab.ClientAddr4, run.Lab.Client.Namespace, lab.ServerAddr4, run.Lab.Server.Namespace)

	tl := &timeline{}
	sub := run.Engine.Subscribe(8192)
	defer sub.Close()
	go func() {
		for ev := range sub.C {
			if line, ok := demoEventLine(ev); ok {
				tl.add(ev.Time, "gateway", "%s", line)
			}
		}
	}()

	server := netip.AddrPortFrom(lab.ServerAddr4, 7000)
	ln, err := listenIn(run.Lab.Server.Namespace, server)
	if err != nil {
		return err
	}
	defer ln.Close()
	go echoServer(ln, tl)

	type story struct {
		title   string
		ka      time.Duration
		want    string
		outcome string
		ok      bool
		from    time.Time
		to      time.Time
	}
	stories := []*story{
		{title: fmt.Sprintf("1. no keepalive, idle %s > timeout %s", o.idle, o.timeout), want: "reset"},
		{title: fmt.Sprintf("2. TCP keepalive every %s (< timeout %s), idle %s", o.keepalive, o.timeout, o.idle), ka: o.keepalive, want: "survived"},
	}
	for _, s := range stories {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.from = time.Now()
		fmt.Fprintf(w, "story %s ...\n", s.title)
		s.outcome = idleStory(ctx, run.Lab.Client.Namespace, server, s.ka, o.idle, tl)
		s.ok = strings.HasPrefix(s.outcome, s.want)
		time.Sleep(100 * time.Millisecond) // let the last events arrive
		s.to = time.Now()
	}
	for _, s := range stories {
		fmt.Fprintf(w, "\n== story %s\n", s.title)
		tl.print(w, s.from, s.to)
		mark := "as expected"
		if !s.ok {
			mark = "NOT as expected (wanted " + s.want + ")"
		}
		fmt.Fprintf(w, "  outcome: %s — %s\n", s.outcome, mark)
	}
	st := run.Engine.Stats().Table
	fmt.Fprintf(w, "\ngateway: %d connections created, %d expired, %d keepalive probes seen\n",
		st.Created, st.Destroyed[conntrack.ReasonExpired], st.KeepaliveProbes)
	if stories[0].ok && stories[1].ok {
		fmt.Fprintln(w, "\nresult: PASS — the idle connection died at the box; TCP keepalive below the box's timeout kept the other alive.")
		fmt.Fprintln(w, "fix in production: set TCP keepalive (or an application heartbeat) below your middlebox's idle timeout.")
		return nil
	}
	fmt.Fprintln(w, "\nresult: FAIL")
	return errDemoFailed
}

// demoEventLine keeps the events that tell the story: table changes, packets not
// forwarded, and keepalive probes.
func demoEventLine(ev policy.Event) (string, bool) {
	j := gateway.EventOf(ev, time.Time{})
	switch ev.Type {
	case conntrack.EventVerdict:
		switch {
		case ev.Cause == policy.ReasonNotForwarded:
			return "", false // link-local chatter of the TUN links (router solicitations)
		case ev.Verdict == policy.Forward && ev.Keepalive:
			return "keepalive probe " + stripProto(j.Orig) + " forwarded: it refreshes the entry", true
		case ev.Verdict == policy.Forward:
			return "", false
		case ev.Verdict == policy.Reset && ev.Cause == policy.ReasonOrphan:
			return "no live entry for " + stripProto(j.Orig) + ": packet dropped, RST sent back (orphan: reset)", true
		}
		return fmt.Sprintf("%s %s (%s %s)", ev.Verdict, stripProto(j.Orig), ev.Dir, ev.Cause), true
	case conntrack.EventDestroy:
		if ev.Reason == conntrack.ReasonExpired {
			return fmt.Sprintf("[DESTROY] %s expired after %.1fs idle (timeout %.1fs)", stripProto(j.Orig), ev.Idle.Seconds(), ev.Timeout.Seconds()), true
		}
		return fmt.Sprintf("[DESTROY] %s %s", stripProto(j.Orig), ev.Reason), true
	case conntrack.EventNew:
		return fmt.Sprintf("[NEW] %s %s", j.State, stripProto(j.Orig)), true
	case conntrack.EventUpdate:
		return fmt.Sprintf("[UPDATE] %s -> %s %s", j.OldState, j.State, stripProto(j.Orig)), true
	}
	return "", false
}

func listenIn(ns string, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := lab.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	return ln, err
}

func echoServer(ln net.Listener, tl *timeline) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tl.add(time.Now(), "server", "accepted %s", c.RemoteAddr())
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					tl.add(time.Now(), "server", "connection from %s ended: %v", c.RemoteAddr(), shortErr(err))
					return
				}
				tl.add(time.Now(), "server", "got %q, echoing", buf[:n])
				c.Write(buf[:n])
			}
		}()
	}
}

// idleStory connects, exchanges a line, idles, writes again and reports what happened:
// "survived", "reset (...)", or another failure.
func idleStory(ctx context.Context, ns string, server netip.AddrPort, keepalive, idle time.Duration, tl *timeline) string {
	d := net.Dialer{Timeout: 3 * time.Second, KeepAlive: -1}
	if keepalive > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepalive, Interval: keepalive, Count: 3}
	}
	var c net.Conn
	if err := lab.Do(ns, func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", server.String())
		return err
	}); err != nil {
		tl.add(time.Now(), "client", "connect failed: %v", err)
		return "connect failed: " + err.Error()
	}
	defer c.Close()
	ka := "keepalive off"
	if keepalive > 0 {
		ka = fmt.Sprintf("SO_KEEPALIVE on, TCP_KEEPIDLE=%s TCP_KEEPINTVL=%s TCP_KEEPCNT=3", keepalive, keepalive)
	}
	tl.add(time.Now(), "client", "connected %s -> %s (%s)", c.LocalAddr(), c.RemoteAddr(), ka)
	buf := make([]byte, 64)
	exchange := func(msg string) error {
		at := time.Now()
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		tl.add(at, "client", "wrote %q", msg)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		tl.add(time.Now(), "client", "read echo %q", buf[:n])
		return nil
	}
	if err := exchange("hello"); err != nil {
		return "first exchange failed: " + err.Error()
	}
	tl.add(time.Now(), "client", "idle for %s ...", idle)
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return "interrupted"
	}
	wrote := time.Now()
	err := exchange("still there?")
	switch {
	case err == nil:
		return "survived: the write after the idle period was echoed"
	case errors.Is(err, syscall.ECONNRESET):
		tl.add(time.Now(), "client", "read failed: ECONNRESET %.0f ms after the write", time.Since(wrote).Seconds()*1000)
		return fmt.Sprintf("reset: the client saw ECONNRESET %.0f ms after writing", time.Since(wrote).Seconds()*1000)
	default:
		tl.add(time.Now(), "client", "failed: %v", shortErr(err))
		return "failed: " + shortErr(err)
	}
}

func shortErr(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}
