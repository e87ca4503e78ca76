package conntrack

import "github.com/hashicorp/golang-lru/v2/simplelru"

// recency orders entries by last activity for eviction. It is two
// simplelru lists over slab indices: droppable entries (what EarlyDrop may
// pick, see droppable) and the others. Every live entry is in exactly one
// list. Activity (a refresh) moves an entry to the front of its list, so
// within a list the order is the order of record.refreshed, and the least
// recently active entry of the table is the older of the two list tails.
// The lists never evict by themselves: their size is the table capacity.
type recency struct {
	keep, drop *simplelru.LRU[uint32, struct{}]
}

func (l *recency) init(capacity int) {
	l.keep, _ = simplelru.NewLRU[uint32, struct{}](capacity, nil)
	l.drop, _ = simplelru.NewLRU[uint32, struct{}](capacity, nil)
}

// droppable reports whether Linux's early_drop could pick r: not assured,
// or a TCP entry in a closing state (tcp_can_early_drop).
func droppable(r *record) bool {
	return r.flags&rfAssured == 0 || r.proto == ProtoTCP && r.state.closing()
}

func (l *recency) list(drop bool) *simplelru.LRU[uint32, struct{}] {
	if drop {
		return l.drop
	}
	return l.keep
}

func (l *recency) add(i uint32, drop bool) { l.list(drop).Add(i, struct{}{}) }

func (l *recency) touch(i uint32, drop bool) { l.list(drop).Get(i) }

func (l *recency) remove(i uint32, drop bool) { l.list(drop).Remove(i) }

// move puts i at the front of the other list.
func (l *recency) move(i uint32, from bool) {
	l.list(from).Remove(i)
	l.list(!from).Add(i, struct{}{})
}

// oldestDroppable is the least recently active droppable entry.
func (l *recency) oldestDroppable() (uint32, bool) {
	i, _, ok := l.drop.GetOldest()
	return i, ok
}

// oldestLocked is the least recently active entry of the table.
func (t *Table) oldestLocked() (uint32, bool) {
	k, _, okK := t.lru.keep.GetOldest()
	d, _, okD := t.lru.drop.GetOldest()
	switch {
	case !okK:
		return d, okD
	case !okD:
		return k, true
	case t.slab.at(k).refreshed < t.slab.at(d).refreshed:
		return k, true
	}
	return d, true
}
