package policy

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// Event is one event of the engine's stream, a value (each subscriber receives a
// copy): a change to a connection as conntrack -E reports it (Type NEW, UPDATE or
// DESTROY, the embedded conntrack.Event) or, with verdict_events on, one packet's
// VERDICT. Events arrive in the order the engine made them: within one packet, the
// DESTROYs of the entries it found expired, then the NEW or UPDATE of its own, then
// its VERDICT.
type Event struct {
	conntrack.Event

	// VERDICT only. Orig and Reply are the packet's connection, or its own tuple
	// (and its reverse) when it has none; Reason, a DESTROY's, stays zero.

	// Verdict is what the packet got.
	Verdict Verdict
	// Cause is why (Result.Reason).
	Cause Reason
	// Dir is the way the packet crossed.
	Dir Dir
	// Keepalive: the packet is a TCP keepalive probe (conntrack.Result.Keepalive).
	Keepalive bool
}

// String formats the event for people: a table event as conntrack.Event does, a
// verdict as "[VERDICT] drop tcp 198.18.0.2:40000 -> 198.19.0.2:80 outbound orphan keepalive".
func (e Event) String() string {
	if e.Type != conntrack.EventVerdict {
		return e.Event.String()
	}
	var b strings.Builder
	b.WriteString("[" + e.Type.String() + "] " + e.Verdict.String())
	if e.Orig != (conntrack.Key{}) {
		b.WriteString(" " + e.Orig.String())
	}
	b.WriteString(" " + e.Dir.String() + " " + e.Cause.String())
	if e.Keepalive {
		b.WriteString(" keepalive")
	}
	return b.String()
}

// Subscription receives the engine's events on C until Close. Sends never block the
// engine: when C's buffer is full the event is dropped and counted, here and in
// Stats.EventsDropped.
type Subscription struct {
	C <-chan Event

	c        chan Event
	h        *hub
	verdicts bool             // SubscribeOptions.Verdicts
	match    func(Event) bool // SubscribeOptions.Match
	dropped  atomic.Uint64
	closed   bool // guarded by h.mu
}

// SubscribeOptions choose what a subscription receives.
type SubscribeOptions struct {
	// Buffer is the size of the channel, at least 1.
	Buffer int
	// Verdicts: this subscriber receives VERDICT events, one per packet, whatever
	// the policy's verdict_events says (which, on, sends them to every subscriber).
	// The engine makes VERDICT events only while someone receives them.
	Verdicts bool
	// Match, if not nil, picks the events this subscriber receives; the others are
	// neither sent nor counted as dropped. It runs on the packet path with the
	// engine's lock held: it must be quick and must not call the engine. (It takes
	// the event by value so that publishing stays free of allocations.)
	Match func(Event) bool
}

// Subscribe returns a subscription with a channel of the given buffer size (at least
// 1) that receives every event from now on (VERDICT events while verdict_events is
// on). Close it when done.
func (e *Engine) Subscribe(buffer int) *Subscription {
	return e.subs.subscribe(SubscribeOptions{Buffer: buffer})
}

// SubscribeWith is Subscribe with options: VERDICT events for this subscriber alone,
// and a filter applied before the buffer, so that events nobody asked for never
// fill it.
func (e *Engine) SubscribeWith(o SubscribeOptions) *Subscription {
	return e.subs.subscribe(o)
}

// Dropped is the number of events this subscriber lost to a full buffer.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. It is safe to call more than once and
// concurrently with the engine's use.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	subs := make([]*Subscription, 0, len(h.subs))
	for _, o := range h.subs {
		if o != s {
			subs = append(subs, o)
		}
	}
	h.subs = subs
	h.n.Store(int32(len(subs)))
	if s.verdicts {
		h.verdicts.Add(-1)
	}
	close(s.c)
}

// hub is the subscriber list. mu guards subs; it is taken after Engine.mu.
type hub struct {
	mu       sync.RWMutex
	subs     []*Subscription
	n        atomic.Int32 // len(subs), read without the lock
	verdicts atomic.Int32 // subscribers with SubscribeOptions.Verdicts
	dropped  atomic.Uint64
}

func (h *hub) subscribe(o SubscribeOptions) *Subscription {
	c := make(chan Event, max(o.Buffer, 1))
	s := &Subscription{C: c, c: c, h: h, verdicts: o.Verdicts, match: o.Match}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs = append(h.subs[:len(h.subs):len(h.subs)], s)
	h.n.Store(int32(len(h.subs)))
	if o.Verdicts {
		h.verdicts.Add(1)
	}
	return s
}

// active reports whether anyone listens; the engine builds no event when nobody does.
func (h *hub) active() bool { return h.n.Load() > 0 }

// wantVerdicts reports whether a subscriber asked for VERDICT events of its own.
func (h *hub) wantVerdicts() bool { return h.verdicts.Load() > 0 }

// publish sends ev to every subscriber whose Match takes it, without blocking and
// without allocating.
func (h *hub) publish(ev *Event) { h.send(ev, true) }

// publishVerdict sends a VERDICT event to the subscribers that asked for verdicts,
// or to every subscriber when toAll (verdict_events is on).
func (h *hub) publishVerdict(ev *Event, toAll bool) { h.send(ev, toAll) }

func (h *hub) send(ev *Event, all bool) {
	h.mu.RLock()
	for _, s := range h.subs {
		if !all && !s.verdicts || s.match != nil && !s.match(*ev) {
			continue
		}
		select {
		case s.c <- *ev:
		default:
			s.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
	h.mu.RUnlock()
}

// publishConnLocked publishes the NEW or UPDATE event of a packet's connection, if
// the table created or changed it.
func (e *Engine) publishConnLocked(r *conntrack.Result, now time.Time) {
	typ := conntrack.EventNew
	switch {
	case r.Status == conntrack.Created:
	case r.Status == conntrack.Hit && r.Updated:
		typ = conntrack.EventUpdate
	default:
		return
	}
	ent, ok := e.table.Get(r.Ref)
	if !ok {
		return
	}
	ev := Event{Event: ent.Event(typ, now)}
	if typ == conntrack.EventUpdate {
		ev.OldState = r.OldState
	}
	e.subs.publish(&ev)
}

// publishVerdictLocked publishes a packet's VERDICT event.
func (e *Engine) publishVerdictLocked(res *Result, dir Dir, now time.Time) {
	ev := Event{
		Event:     conntrack.Event{Type: conntrack.EventVerdict, ID: res.Conn.Ref.ID(), Time: now, Proto: res.Info.Proto, Orig: res.Conn.Orig, Reply: res.Conn.Reply},
		Verdict:   res.Verdict,
		Cause:     res.Reason,
		Dir:       dir,
		Keepalive: res.Conn.Keepalive,
	}
	if ev.Orig == (conntrack.Key{}) && res.Info.Version != 0 {
		// No connection: name the packet by its own tuple.
		ev.Orig = wireKey(&res.Info)
		ev.Reply = ev.Orig.Reply()
	}
	e.subs.publishVerdict(&ev, e.pol.VerdictEvents)
}
