package policy

import (
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// What callers may ask of the engine's connection table: the queries, and the
// operator's verbs in conntrack-tools' words (-L list, -D delete, -U --timeout,
// -F flush) plus expire. Each change goes through the engine, so that NAT mappings
// and per-source counts follow the entries and every destroyed entry is published.

// Filter picks connections by their snapshot at the call's now; a nil Filter picks
// every live connection. It may run with the engine's lock held: it must not call the
// engine, and its argument is valid only during the call.
type Filter func(*conntrack.EntryInfo) bool

// live is f as a table match over live entries.
func (f Filter) live() func(*conntrack.EntryInfo) bool {
	if f == nil {
		return func(*conntrack.EntryInfo) bool { return true }
	}
	return f
}

// List returns a snapshot of the live connections at now that match picks, in no
// particular order, as conntrack -L shows them.
func (e *Engine) List(now time.Time, match Filter) []conntrack.EntryInfo {
	l := e.table.List(now)
	if match == nil {
		return l
	}
	out := l[:0]
	for i := range l {
		if match(&l[i]) {
			out = append(out, l[i])
		}
	}
	return out
}

// Len is the number of connections the table holds, including expired ones not yet
// swept.
func (e *Engine) Len() int { return e.table.Len() }

// Delete forgets the live connections match picks, as conntrack -D does: each is
// destroyed now (DESTROY reason deleted, its NAT mapping released), so its next
// packet is an orphan. No RST is sent. It returns how many it deleted. Large
// selections are deleted in chunks, the engine lock released between them.
func (e *Engine) Delete(now time.Time, match Filter) int {
	e.mu.Lock()
	refs := e.table.Select(now, match.live())
	e.mu.Unlock()
	return e.destroyAll(refs, conntrack.ReasonDeleted, now)
}

// Flush forgets every connection and NAT mapping, as a middlebox reboot does: each
// entry is destroyed (DESTROY reason flushed), expired ones not yet swept included.
// It returns how many. Like Delete it works in chunks, so connections a packet opens
// meanwhile may survive it.
func (e *Engine) Flush(now time.Time) int {
	e.mu.Lock()
	refs := e.table.Select(now, nil)
	e.frags.clear()
	e.mu.Unlock()
	return e.destroyAll(refs, conntrack.ReasonFlushed, now)
}

func (e *Engine) destroyAll(refs []conntrack.Ref, why conntrack.Reason, now time.Time) int {
	n := 0
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), sweepChunk)]
		refs = refs[len(chunk):]
		e.mu.Lock()
		n += e.ctDestroyLocked(chunk, why, now)
		e.endAllLocked(nil) // neither reason sends a RST
		e.mu.Unlock()
	}
	return n
}

// SetTimeLeft makes the live connections match picks expire left after now, as
// conntrack -U --timeout does (a negative left counts as 0), and returns how many it
// changed. They then end as their idle timeout would have ended them, at that time:
// reason expired (closed in TIME_WAIT and CLOSE), reset_on_expire's RSTs included.
// A packet that refreshes one first restarts its normal timeout.
func (e *Engine) SetTimeLeft(now time.Time, match Filter, left time.Duration) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.SetTimeLeft(e.table.Select(now, match.live()), left, now)
}

// Expire ends the live connections match picks now, exactly as their idle timeout
// would: SetTimeLeft to 0, then Tick, whose RSTs (reset_on_expire) it appends to out
// for the caller to inject. It returns how many connections it expired. A packet
// that arrives between the two finds its connection expired and gets the RSTs in its
// own Result instead.
func (e *Engine) Expire(now time.Time, match Filter, out []Injected) (int, []Injected) {
	n := e.SetTimeLeft(now, match, 0)
	return n, e.Tick(now, out)
}
