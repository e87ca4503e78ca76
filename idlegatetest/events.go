package idlegatetest

import (
	"sync"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

const (
	// recorderBuffer is the subscription's buffer: what the engine can publish
	// between two drains before it drops events.
	recorderBuffer = 1 << 16
	// maxEvents bounds what a lab keeps; later events are counted as lost.
	maxEvents = 1 << 20
	// drainEvery is how often the recorder empties the subscription.
	drainEvery = 10 * time.Millisecond
)

// recorder keeps every event of the lab's gateway in order. Every receive from the
// subscription happens under mu and is appended at once, so a snapshot taken after
// an engine call returned holds every event that call published: the call put them
// in the channel, and the snapshot drains it first.
type recorder struct {
	sub *policy.Subscription

	mu      sync.Mutex // guards events, dropped, and every receive from sub.C
	events  []policy.Event
	dropped uint64 // beyond maxEvents
}

// run drains the subscription every drainEvery until stop is closed, then takes
// what is left, closes the subscription and closes done.
func (r *recorder) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			r.mu.Lock()
			r.drainLocked()
			r.mu.Unlock()
			r.sub.Close()
			return
		case <-t.C:
		}
		r.mu.Lock()
		r.drainLocked()
		r.mu.Unlock()
	}
}

func (r *recorder) drainLocked() {
	if r.sub == nil {
		return
	}
	for {
		select {
		case ev, ok := <-r.sub.C:
			if !ok {
				return
			}
			if len(r.events) >= maxEvents {
				r.dropped++
				continue
			}
			r.events = append(r.events, ev)
		default:
			return
		}
	}
}

// snapshot returns a copy of every event so far.
func (r *recorder) snapshot() []policy.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	return append([]policy.Event(nil), r.events...)
}

// len is how many events are recorded so far.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	return len(r.events)
}

// lost counts the events the lab missed: dropped by a full subscription or beyond
// maxEvents. Valid after run returned.
func (r *recorder) lost() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil {
		return 0
	}
	return r.dropped + r.sub.Dropped()
}

// awaitDestroyed waits, at most max, until the events after index since hold a
// DESTROY for every connection of keys (their original tuples).
func (r *recorder) awaitDestroyed(since int, keys []conntrack.Key, max time.Duration) bool {
	want := make(map[conntrack.Key]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	deadline := time.Now().Add(max)
	for {
		r.mu.Lock()
		r.drainLocked()
		for _, ev := range r.events[min(since, len(r.events)):] {
			if ev.Type == conntrack.EventDestroy {
				delete(want, ev.Orig)
			}
		}
		since = len(r.events)
		r.mu.Unlock()
		if len(want) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
