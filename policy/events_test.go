package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// drain takes every event buffered in sub.
func drain(sub *Subscription) []Event {
	var evs []Event
	for {
		select {
		case ev := <-sub.C:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// TestEventStream: the engine is the one publisher: NEW, UPDATE and DESTROY from its
// table, in order with each packet's VERDICT, and the verdict's fields typed.
func TestEventStream(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.VerdictEvents = true; p.Orphan = OrphanReset })
	sub := r.e.Subscribe(1024)
	defer sub.Close()
	r.handshake(cli, srv)
	r.advance(time.Second)
	r.send(tcp(t, cli, srv, "A", 1002, 5001, ""), Outbound, Forward, ReasonTracked) // a keepalive probe
	r.advance(5 * time.Second)                                                      // the 5 s established timeout fires
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Reset, ReasonOrphan)

	type want struct {
		typ       conntrack.EventType
		old, st   conntrack.TCPState
		destroy   conntrack.Reason
		verdict   Verdict
		cause     Reason
		dir       Dir
		keepalive bool
	}
	v := conntrack.EventVerdict
	wants := []want{
		{typ: conntrack.EventNew, old: conntrack.TCPSynSent, st: conntrack.TCPSynSent},
		{typ: v, verdict: Forward, cause: ReasonNew, dir: Outbound},
		{typ: conntrack.EventUpdate, old: conntrack.TCPSynSent, st: conntrack.TCPSynRecv},
		{typ: v, verdict: Forward, cause: ReasonTracked, dir: Inbound},
		{typ: conntrack.EventUpdate, old: conntrack.TCPSynRecv, st: conntrack.TCPEstablished},
		{typ: v, verdict: Forward, cause: ReasonTracked, dir: Outbound},
		{typ: v, verdict: Forward, cause: ReasonTracked, dir: Outbound},
		{typ: v, verdict: Forward, cause: ReasonTracked, dir: Inbound},
		{typ: v, verdict: Forward, cause: ReasonTracked, dir: Outbound, keepalive: true},
		{typ: conntrack.EventDestroy, old: conntrack.TCPEstablished, st: conntrack.TCPEstablished, destroy: conntrack.ReasonExpired},
		{typ: v, verdict: Reset, cause: ReasonOrphan, dir: Outbound},
	}
	evs := drain(sub)
	if len(evs) != len(wants) {
		for _, ev := range evs {
			t.Log(ev)
		}
		t.Fatalf("%d events, want %d", len(evs), len(wants))
	}
	key := conntrack.MakeKey(conntrack.ProtoTCP, cli, srv)
	for i, w := range wants {
		ev := evs[i]
		got := want{ev.Type, ev.OldState, ev.State, ev.Reason, ev.Verdict, ev.Cause, ev.Dir, ev.Keepalive}
		if ev.Type == v {
			got.old, got.st = 0, 0
		}
		if got != w {
			t.Errorf("event %d: %v\n got  %+v\n want %+v", i, ev, got, w)
		}
		if ev.Orig != key && ev.Orig != key.Reply() {
			t.Errorf("event %d names %v", i, ev.Orig)
		}
	}
	if d := evs[9]; d.Idle != 5*time.Second || d.Timeout != 5*time.Second || !d.Time.Equal(r.now) {
		t.Errorf("DESTROY: idle %v timeout %v at %v", d.Idle, d.Timeout, d.Time.Sub(t0))
	}
	if s := evs[8].String(); s != "[VERDICT] forward tcp 198.18.0.2:40000 -> 198.19.0.2:80 outbound tracked keepalive" {
		t.Errorf("String: %q", s)
	}
	// The orphan has no connection: it is named by its own tuple.
	if o := evs[10]; o.Orig != key || o.Reply != key.Reply() {
		t.Errorf("orphan named %v / %v", o.Orig, o.Reply)
	}
}

// TestSlowSubscriber: a full subscriber loses events, counted for it and in total,
// and never blocks the engine; Close ends its channel and its count.
func TestSlowSubscriber(t *testing.T) {
	r := newRig(t, nil)
	slow := r.e.Subscribe(2)
	fast := r.e.Subscribe(1024)
	done := make(chan struct{})
	res := new(Result)
	go func() {
		defer close(done)
		for i := range 100 {
			r.e.Process(udp(t, ap(client4, uint16(2000+i)), ap(server4, 7000), "q"), Outbound, t0, res)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a full subscriber blocked the engine")
	}
	if got := len(drain(slow)); got != 2 {
		t.Errorf("slow got %d", got)
	}
	if slow.Dropped() != 98 || fast.Dropped() != 0 || r.e.Stats().EventsDropped != 98 {
		t.Errorf("dropped slow %d fast %d total %d", slow.Dropped(), fast.Dropped(), r.e.Stats().EventsDropped)
	}
	if got := len(drain(fast)); got != 100 {
		t.Errorf("fast got %d", got)
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C; ok {
		t.Error("C open after Close")
	}
	r.e.Process(udp(t, ap(client4, 1999), ap(server4, 7000), "q"), Outbound, t0, res)
	if slow.Dropped() != 98 || len(drain(fast)) != 1 {
		t.Error("closed subscriber still counted")
	}
}

// TestStateChangeEventsDoNotAllocate: an UPDATE published to a subscriber costs no
// allocation (FIN_WAIT to CLOSE_WAIT stays in the same recency list; see
// conntrack's TestZeroAllocs).
func TestStateChangeEventsDoNotAllocate(t *testing.T) {
	r := newRig(t, nil)
	sub := r.e.Subscribe(1 << 12)
	defer sub.Close()
	const runs = 200
	var acks [][]byte
	for i := range runs + 1 {
		c := ap(client4, uint16(30000+i))
		r.handshake(c, srv)
		r.send(tcp(t, c, srv, "FA", 1003, 5001, ""), Outbound, Forward, ReasonTracked)
		acks = append(acks, tcp(t, srv, c, "A", 5001, 1004, ""))
	}
	drain(sub)
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		r.e.Process(acks[i], Inbound, r.now, r.res)
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per state change with a subscriber", allocs)
	}
	updates := 0
	for _, ev := range drain(sub) {
		if ev.Type == conntrack.EventUpdate && ev.OldState == conntrack.TCPFinWait && ev.State == conntrack.TCPCloseWait {
			updates++
		}
	}
	if updates != runs+1 {
		t.Fatalf("%d UPDATE events, want %d", updates, runs+1)
	}
}

// The NAT rig used by the verb tests: one connection from cli through out4.
func natRig(t *testing.T, mutate func(*Policy)) (*rig, netip.AddrPort) {
	r := newRig(t, func(p *Policy) {
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
		p.MaxConnsPerSource = 1
		if mutate != nil {
			mutate(p)
		}
	})
	return r, r.handshake(cli, srv)
}

// TestSubscribeWith: with verdict_events off, a subscriber that asks for verdicts
// gets each packet's VERDICT (with its connection's id) and a plain one gets none;
// a Match filter picks events before the buffer, so what it refuses is neither
// received nor counted as lost; once the verdict subscriber leaves, no VERDICT is
// sent to anyone.
func TestSubscribeWith(t *testing.T) {
	r := newRig(t, nil)
	plain := r.e.Subscribe(1024)
	defer plain.Close()
	verdicts := r.e.SubscribeWith(SubscribeOptions{Buffer: 1024, Verdicts: true})
	defer verdicts.Close()
	port7000 := func(ev Event) bool { return ev.Orig.DstPort == 7000 }
	picky := r.e.SubscribeWith(SubscribeOptions{Buffer: 1, Match: port7000})
	defer picky.Close()

	r.handshake(cli, srv)
	for i := range 3 {
		r.send(udp(t, ap(client4, uint16(2000+i)), ap(server4, 9000), "q"), Outbound, Forward, ReasonNew)
	}
	r.send(udp(t, ap(client4, 3000), ap(server4, 7000), "q"), Outbound, Forward, ReasonNew)

	for _, ev := range drain(plain) {
		if ev.Type == conntrack.EventVerdict {
			t.Errorf("a plain subscriber got %v with verdict_events off", ev)
		}
	}
	var nv int
	id := uint64(0)
	for _, e := range r.e.List(r.now, nil) {
		if e.Orig.SrcAddrPort() == cli {
			id = e.ID
		}
	}
	for _, ev := range drain(verdicts) {
		if ev.Type != conntrack.EventVerdict {
			continue
		}
		nv++
		if ev.Orig.SrcAddrPort() == cli && ev.ID != id {
			t.Errorf("VERDICT %v has id %d, want its connection's %d", ev, ev.ID, id)
		}
	}
	if nv != 9 { // the five packets of the handshake and four datagrams
		t.Errorf("the verdict subscriber got %d VERDICT events, want 9", nv)
	}
	got := drain(picky)
	if len(got) != 1 || got[0].Orig.DstPort != 7000 || got[0].Type != conntrack.EventNew {
		t.Errorf("the port 7000 subscriber got %v, want the one NEW of port 7000", got)
	}
	if picky.Dropped() != 0 {
		t.Errorf("the port 7000 subscriber (buffer 1) lost %d events: refused events must not count", picky.Dropped())
	}

	verdicts.Close()
	r.send(udp(t, ap(client4, 3001), ap(server4, 7000), "q"), Outbound, Forward, ReasonNew)
	for _, ev := range drain(plain) {
		if ev.Type == conntrack.EventVerdict {
			t.Errorf("a plain subscriber got %v after the verdict subscriber left", ev)
		}
	}
}

// TestVerdictBytes: bytes are counted per arrival side and verdict.
func TestVerdictBytes(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.Orphan = OrphanDrop })
	q := udp(t, ap(client4, 2000), ap(server4, 9000), "query")
	a := udp(t, ap(server4, 9000), ap(client4, 2000), "answer!")
	orphan := tcp(t, ap(server4, 80), ap(client4, 40000), "A", 1, 1, "")
	r.send(q, Outbound, Forward, ReasonNew)
	r.send(a, Inbound, Forward, ReasonTracked)
	r.send(orphan, Inbound, Drop, ReasonOrphan)
	b := r.e.Stats().Bytes
	if b[Inside][Forward] != uint64(len(q)) || b[Outside][Forward] != uint64(len(a)) || b[Outside][Drop] != uint64(len(orphan)) || b[Inside][Drop] != 0 {
		t.Errorf("bytes by side and verdict %v; want inside forward %d, outside forward %d, outside drop %d", b, len(q), len(a), len(orphan))
	}
}

// TestFilteredVerdictSubscriberDoesNotAllocate: a subscriber's own verdicts and its
// Match filter keep the packet path free of allocations.
func TestFilteredVerdictSubscriberDoesNotAllocate(t *testing.T) {
	r := newRig(t, nil)
	sub := r.e.SubscribeWith(SubscribeOptions{Buffer: 1 << 14, Verdicts: true, Match: func(ev Event) bool { return ev.Orig.DstPort == 80 }})
	defer sub.Close()
	r.handshake(cli, srv)
	pkt := tcp(t, cli, srv, "PA", 1003, 5001, "data")
	buf := make([]byte, len(pkt))
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, pkt)
		r.e.Process(buf, Outbound, r.now, r.res)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per packet with a filtered verdict subscriber", allocs)
	}
	if n := len(drain(sub)); n < 1000 {
		t.Fatalf("the subscriber got %d events, want at least the 1000 VERDICTs", n)
	}
}
