package conntrack

import (
	"testing"
	"time"
)

// TestEntryIDs: every entry gets an id of its own, never 0, the same in List,
// Get, its Ref, its events and its Destroyed record; a slot reused by a new
// entry gives it a new id.
func TestEntryIDs(t *testing.T) {
	tab := newTable(t)
	seen := map[uint64]Key{}
	var refs []Ref
	for i := range 5 {
		k := nthKey(ProtoUDP, i)
		res := tab.Create(udp4(k, 1), at(0), k.Reply(), false)
		if res.Status != Created {
			t.Fatalf("create %v: %v", k, res.Status)
		}
		id := res.Ref.ID()
		if id == 0 {
			t.Fatalf("entry %v has id 0", k)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("entries %v and %v share id %d", other, k, id)
		}
		seen[id] = k
		e, ok := tab.Get(res.Ref)
		if !ok || e.ID != id {
			t.Fatalf("Get(%v).ID = %d, %v; want the Ref's id %d", k, e.ID, ok, id)
		}
		if ev := e.Event(EventNew, at(0)); ev.ID != id {
			t.Errorf("NEW event of %v has id %d, want %d", k, ev.ID, id)
		}
		refs = append(refs, res.Ref)
	}
	for _, e := range tab.List(at(time.Second)) {
		if seen[e.ID] != e.Orig {
			t.Errorf("List: %v has id %d, which Create gave to %v", e.Orig, e.ID, seen[e.ID])
		}
	}
	// Destroy the first entry: its record and event keep its id, and the entry
	// that reuses its slot gets another one.
	first := refs[0].ID()
	var gone []Destroyed
	if n := tab.Destroy(refs[:1], ReasonDeleted, at(time.Second), &gone); n != 1 || len(gone) != 1 {
		t.Fatalf("Destroy: %d destroyed, %d reported; want 1", n, len(gone))
	}
	if gone[0].ID != first || gone[0].Event().ID != first {
		t.Errorf("Destroyed record id %d, event id %d; want %d", gone[0].ID, gone[0].Event().ID, first)
	}
	if refs[0].ID() != first {
		t.Errorf("a stale Ref's id changed from %d to %d", first, refs[0].ID())
	}
	k := nthKey(ProtoUDP, 99)
	res := tab.Create(udp4(k, 1), at(2*time.Second), k.Reply(), false)
	if id := res.Ref.ID(); id == 0 || seen[id] != (Key{}) {
		t.Errorf("the entry reusing a slot got id %d, already given to %v", id, seen[id])
	}
	if (Ref{}).ID() != 0 {
		t.Errorf("the zero Ref has id %d, want 0", (Ref{}).ID())
	}
}
