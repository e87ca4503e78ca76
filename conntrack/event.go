package conntrack

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventType names an event as conntrack -E does, plus VERDICT for the
// policy's per-packet verdicts.
type EventType uint8

const (
	EventNew     EventType = iota // NEW: an entry was created
	EventUpdate                   // UPDATE: TCP state changed, or the entry became assured
	EventDestroy                  // DESTROY: an entry was destroyed, Reason says why
	EventVerdict                  // VERDICT: emitted by the policy through Emit
)

var eventNames = [...]string{"NEW", "UPDATE", "DESTROY", "VERDICT"}

func (e EventType) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "EVENT(" + strconv.Itoa(int(e)) + ")"
}

// Event is one table event, a value: subscribers receive copies.
type Event struct {
	Type            EventType
	Time            time.Time
	Orig, Reply     Key
	Proto           uint8
	OldState, State TCPState // UPDATE: before and after; others: current
	Assured         bool
	Reason          Reason // DESTROY only
	// Idle is how long the idle timer had run (now - last refresh) and
	// Timeout the idle timeout of the state at the time: for a DESTROY
	// with reason expired or closed, the timeout that fired (Idle >= Timeout).
	Idle, Timeout time.Duration
	Verdict       string // VERDICT: set by the policy
	Detail        string // free text, set by the policy
	Packets       [2]uint64
	Bytes         [2]uint64
}

// String formats the event in the spirit of conntrack -E:
// "[DESTROY] expired tcp ESTABLISHED 198.18.0.2:40000 -> 198.19.0.2:80 reply 198.19.0.2:80 -> 198.18.0.2:40000 idle 350s timeout 350s".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString("[" + e.Type.String() + "]")
	if e.Type == EventDestroy {
		b.WriteString(" " + e.Reason.String())
	}
	if e.Type == EventVerdict && e.Verdict != "" {
		b.WriteString(" " + e.Verdict)
	}
	b.WriteString(" " + e.Orig.String())
	if e.Proto == ProtoTCP {
		if e.Type == EventUpdate && e.OldState != e.State {
			b.WriteString(" " + e.OldState.String() + "->" + e.State.String())
		} else {
			b.WriteString(" " + e.State.String())
		}
	}
	if e.Reply != e.Orig.Reply() {
		b.WriteString(" reply " + e.Reply.String())
	}
	if !e.Assured && e.Type != EventVerdict {
		b.WriteString(" [UNREPLIED]")
	} else if e.Assured {
		b.WriteString(" [ASSURED]")
	}
	if e.Type == EventDestroy {
		b.WriteString(" idle " + e.Idle.String() + " timeout " + e.Timeout.String())
	}
	if e.Detail != "" {
		b.WriteString(" " + e.Detail)
	}
	return b.String()
}

// Subscription receives table events on C until Close. Sends never block
// the table: when C's buffer is full the event is dropped and counted.
type Subscription struct {
	C <-chan Event

	c       chan Event
	t       *Table
	dropped atomic.Uint64
	closed  bool // guarded by t.subMu
}

// Dropped is the number of events this subscriber lost to a full buffer.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. It is safe to call more than once and
// concurrently with table use.
func (s *Subscription) Close() {
	t := s.t
	t.subMu.Lock()
	defer t.subMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	subs := make([]*Subscription, 0, len(t.subs))
	for _, o := range t.subs {
		if o != s {
			subs = append(subs, o)
		}
	}
	t.subs = subs
	t.nsubs.Store(int32(len(subs)))
	close(s.c)
}

// Subscribe returns a subscription with a channel of the given buffer size
// (at least 1) that receives every event from now on.
func (t *Table) Subscribe(buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, t: t}
	t.subMu.Lock()
	defer t.subMu.Unlock()
	t.subs = append(t.subs[:len(t.subs):len(t.subs)], s)
	t.nsubs.Store(int32(len(t.subs)))
	return s
}

// Emit sends ev to every subscriber, for the policy's VERDICT events. It
// never blocks and does not allocate. Safe for concurrent use, and from
// OnDestroy (it does not take the table lock).
func (t *Table) Emit(ev Event) { t.emit(&ev) }

// subscribed reports whether anyone listens; callers skip building events
// when nobody does.
func (t *Table) subscribed() bool { return t.nsubs.Load() > 0 }

// emit fans ev out under subMu (lock order: Table.mu, then subMu).
func (t *Table) emit(ev *Event) {
	if !t.subscribed() {
		return
	}
	t.subMu.RLock()
	for _, s := range t.subs {
		select {
		case s.c <- *ev:
		default:
			s.dropped.Add(1)
			t.eventsDropped.Add(1)
		}
	}
	t.subMu.RUnlock()
}

// subState is embedded in Table: the subscriber list.
type subState struct {
	subMu         sync.RWMutex
	subs          []*Subscription // guarded by subMu
	nsubs         atomic.Int32    // len(subs), read without the lock
	eventsDropped atomic.Uint64
}
