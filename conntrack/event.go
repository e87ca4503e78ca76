package conntrack

import (
	"strconv"
	"strings"
	"time"
)

// EventType names an event as conntrack -E does, plus VERDICT for the
// policy's per-packet verdicts. The table itself publishes nothing: its
// calls report what they did (Result.Status and Updated, Destroyed), and the
// owner of the table turns that into events (Entry.Event, Destroyed.Event).
type EventType uint8

const (
	EventNew     EventType = iota // NEW: an entry was created
	EventUpdate                   // UPDATE: TCP state changed, the first reply was seen, or the entry became assured
	EventDestroy                  // DESTROY: an entry was destroyed, Reason says why
	EventVerdict                  // VERDICT: one packet's verdict, made by the policy engine
)

var eventNames = [...]string{"NEW", "UPDATE", "DESTROY", "VERDICT"}

func (e EventType) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "EVENT(" + strconv.Itoa(int(e)) + ")"
}

// Event is one change to an entry, a value.
type Event struct {
	Type EventType
	// ID is the entry's Entry.ID (0 for a VERDICT of a packet of no entry).
	ID              uint64
	Time            time.Time
	Orig, Reply     Key
	Proto           uint8
	OldState, State TCPState // UPDATE: before and after; others: current
	Assured         bool
	Replied         bool   // a reply was seen; conntrack -E prints [UNREPLIED] until then
	Reason          Reason // DESTROY only
	// Idle is how long the idle timer had run (now - last refresh) and
	// Timeout the idle timeout of the state at the time: for a DESTROY
	// with reason expired or closed, the timeout that fired (Idle >= Timeout).
	Idle, Timeout time.Duration
	Packets       [2]uint64
	Bytes         [2]uint64
}

// Event is the event of type typ (NEW or UPDATE) that reports entry e as it
// is at time at. For an UPDATE the caller sets OldState (Result.OldState).
func (e *Entry) Event(typ EventType, at time.Time) Event {
	return Event{
		Type:     typ,
		ID:       e.ID,
		Time:     at,
		Orig:     e.Orig,
		Reply:    e.Reply,
		Proto:    e.Proto,
		OldState: e.State,
		State:    e.State,
		Assured:  e.Assured,
		Replied:  e.Replied,
		Timeout:  e.Timeout,
		Packets:  e.Packets,
		Bytes:    e.Bytes,
	}
}

// Event is the DESTROY event of d.
func (d *Destroyed) Event() Event {
	ev := d.Entry.Event(EventDestroy, d.At)
	ev.Reason = d.Reason
	ev.Idle = d.Idle()
	return ev
}

// String formats the event in the spirit of conntrack -E:
// "[DESTROY] expired tcp ESTABLISHED 198.18.0.2:40000 -> 198.19.0.2:80 reply 198.19.0.2:80 -> 198.18.0.2:40000 idle 350s timeout 350s".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString("[" + e.Type.String() + "]")
	if e.Type == EventDestroy {
		b.WriteString(" " + e.Reason.String())
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
	if !e.Replied && e.Type != EventVerdict {
		b.WriteString(" [UNREPLIED]")
	}
	if e.Assured {
		b.WriteString(" [ASSURED]")
	}
	if e.Type == EventDestroy {
		b.WriteString(" idle " + e.Idle.String() + " timeout " + e.Timeout.String())
	}
	return b.String()
}
