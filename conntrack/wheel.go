package conntrack

import (
	"math"
	"time"
)

// The expiry wheel: a lazy hashed timing wheel of wheelSize buckets of one
// tick each. Every live entry sits in exactly one bucket, a doubly linked
// list through record.wnext/wprev. An entry is filed under the tick of its
// deadline; when its idle timer restarts it stays where it is, so a refresh
// costs nothing here. When Sweep reaches a bucket it destroys the entries
// that are due and re-files the others under their true deadline.
//
// Invariant: the next time Sweep visits an entry's bucket is no later than
// the tick of the entry's deadline. Refreshes only move deadlines later;
// whatever moves one earlier (a state change to a shorter timeout,
// SetTimeouts) calls retimeLocked.
const (
	wheelBits = 14
	wheelSize = 1 << wheelBits // buckets: 163.84 s of 10 ms ticks per turn
	wheelMask = wheelSize - 1
	tickNanos = int64(10 * time.Millisecond)
)

type wheel struct {
	heads [wheelSize]uint32 // first entry of each bucket, or noIndex
	swept int64             // every bucket up to this tick has been processed
}

func (w *wheel) init() {
	for i := range w.heads {
		w.heads[i] = noIndex
	}
	w.swept = -1
}

// tickOf is floor(ns / tickNanos).
func tickOf(ns int64) int64 {
	t := ns / tickNanos
	if ns%tickNanos < 0 {
		t--
	}
	return t
}

// nextVisit is the first tick after swept that maps to bucket b.
func (w *wheel) nextVisit(b uint16) int64 {
	first := w.swept + 1
	return first + (int64(b)-first)&wheelMask
}

// timeoutLocked is the idle timeout of record r under the current timeouts.
func (t *Table) timeoutLocked(r *record) time.Duration {
	return t.cfg.Timeouts.timeout(r.proto, r.state, r.class(), r.flags&rfAssured != 0)
}

// deadlineLocked is the first instant (ns since base) at which r is expired.
func (t *Table) deadlineLocked(r *record) int64 {
	to := int64(t.timeoutLocked(r))
	if r.refreshed > 0 && to > math.MaxInt64-r.refreshed {
		return math.MaxInt64
	}
	return r.refreshed + to
}

// fileTickLocked is the tick under which r must be filed.
func (t *Table) fileTickLocked(r *record) int64 {
	dt := tickOf(t.deadlineLocked(r))
	if dt <= t.wheel.swept {
		dt = t.wheel.swept + 1
	}
	return dt
}

func (t *Table) fileLocked(i uint32, r *record) {
	b := uint16(t.fileTickLocked(r) & wheelMask)
	r.bucket = b
	r.wprev = noIndex
	r.wnext = t.wheel.heads[b]
	if r.wnext != noIndex {
		t.slab.at(r.wnext).wprev = i
	}
	t.wheel.heads[b] = i
}

func (t *Table) unfileLocked(r *record) {
	if r.wprev == noIndex {
		t.wheel.heads[r.bucket] = r.wnext
	} else {
		t.slab.at(r.wprev).wnext = r.wnext
	}
	if r.wnext != noIndex {
		t.slab.at(r.wnext).wprev = r.wprev
	}
	r.wnext, r.wprev = noIndex, noIndex
}

// retimeLocked re-files r if its deadline moved before its bucket's next visit.
func (t *Table) retimeLocked(i uint32, r *record) {
	if t.wheel.nextVisit(r.bucket) > t.fileTickLocked(r) {
		t.unfileLocked(r)
		t.fileLocked(i, r)
	}
}

// sweepLocked destroys up to budget entries whose deadline is at or before
// now, visiting the buckets of the ticks since the last sweep.
func (t *Table) sweepLocked(now int64, budget int, gone *[]Destroyed) int {
	if budget <= 0 {
		return 0
	}
	w := &t.wheel
	nowTick := tickOf(now)
	start := w.swept + 1
	if nowTick-start >= wheelSize {
		// A full turn or more passed: visit every bucket once.
		start = nowTick - wheelSize + 1
	}
	n := 0
	for tk := start; tk <= nowTick; tk++ {
		b := uint16(tk & wheelMask)
		for i := w.heads[b]; i != noIndex; {
			r := t.slab.at(i)
			next := r.wnext
			if dl := t.deadlineLocked(r); now >= dl {
				t.destroyLocked(i, r, t.expiryReason(r), now, gone)
				n++
				if n == budget {
					// Resume at this bucket next time.
					if tk-1 > w.swept {
						w.swept = tk - 1
					}
					return n
				}
			} else if nb := uint16(tickOf(dl) & wheelMask); nb != b {
				t.unfileLocked(r)
				t.fileLocked(i, r)
			}
			i = next
		}
		// The current tick's bucket may still hold entries due later in
		// the tick: it is visited again next time.
		if tk < nowTick && tk > w.swept {
			w.swept = tk
		}
	}
	return n
}

// expiryReason is the reason of an entry destroyed by its timeout:
// closed for the end of a TCP teardown, expired otherwise.
func (t *Table) expiryReason(r *record) Reason {
	if r.proto == ProtoTCP && (r.state == TCPTimeWait || r.state == TCPClose) {
		return ReasonClosed
	}
	return ReasonExpired
}
