package conntrack

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// index maps tuples to slab slots: an open-addressing hash table with
// linear probing over 4-byte slots, at most half full. A slot holds
// (slab index + 1) << 1 | side. Side 0 stands for the record's original
// tuple and, when the record is not NATed, for its reverse too, so one slot
// serves both directions of a plain flow: the hash is symmetric in the two
// endpoints. Side 1 stands for the reply tuple of a NATed record, which
// lives in slab.nat. Keys are compared against the slab, not stored here.
type index struct {
	slots []uint32
	mask  uint32
	n     int
	seed  [6]uint64
}

const minIndexSlots = 1024

func (ix *index) init() {
	for i := range ix.seed {
		ix.seed[i] = rand.Uint64() | 1
	}
	ix.slots = make([]uint32, minIndexSlots)
	ix.mask = minIndexSlots - 1
	ix.n = 0
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash is a seeded hash of k that does not change when the ends are
// swapped: hash(k) == hash(k.Reply()).
func (ix *index) hash(k *Key) uint64 {
	s0 := binary.LittleEndian.Uint64(k.Src[0:8])
	s1 := binary.LittleEndian.Uint64(k.Src[8:16])
	d0 := binary.LittleEndian.Uint64(k.Dst[0:8])
	d1 := binary.LittleEndian.Uint64(k.Dst[8:16])
	sp, dp := k.SrcPort, k.DstPort
	// Any total order on the endpoints serves to canonicalise.
	if s0 > d0 || s0 == d0 && (s1 > d1 || s1 == d1 && sp > dp) {
		s0, s1, d0, d1, sp, dp = d0, d1, s0, s1, dp, sp
	}
	a := mix(s0^ix.seed[0], s1^ix.seed[1])
	b := mix(d0^ix.seed[2], d1^ix.seed[3])
	c := uint64(sp)<<24 | uint64(dp)<<8 | uint64(k.Proto)
	return mix(a^c^ix.seed[4], b^ix.seed[5])
}

func slotValue(i uint32, side uint32) uint32 { return (i+1)<<1 | side }
func slotIndex(v uint32) uint32              { return v>>1 - 1 }
func slotSide(v uint32) uint32               { return v & 1 }

// findLocked returns the slab index and direction of the live-or-expired
// entry that owns tuple k.
func (t *Table) findLocked(k *Key) (uint32, Dir, bool) {
	ix := &t.index
	for p := uint32(ix.hash(k)) & ix.mask; ; p = (p + 1) & ix.mask {
		v := ix.slots[p]
		if v == 0 {
			return 0, 0, false
		}
		i := slotIndex(v)
		r := t.slab.at(i)
		if slotSide(v) == 1 {
			if *t.slab.natKey(i) == *k {
				return i, Reply, true
			}
			continue
		}
		if r.matchOrig(k) {
			return i, Original, true
		}
		if r.flags&rfNAT == 0 && r.matchOrigReply(k) {
			return i, Reply, true
		}
	}
}

// slotKeyLocked returns a tuple that hashes to the home of slot value v.
func (t *Table) slotKeyLocked(v uint32) Key {
	i := slotIndex(v)
	if slotSide(v) == 1 {
		return *t.slab.natKey(i)
	}
	return t.slab.at(i).origKey()
}

// indexInsertLocked adds slot value v for tuple k; k must not be present.
func (t *Table) indexInsertLocked(k *Key, v uint32) {
	ix := &t.index
	if (ix.n+1)*2 > len(ix.slots) {
		t.indexGrowLocked()
	}
	p := uint32(ix.hash(k)) & ix.mask
	for ix.slots[p] != 0 {
		p = (p + 1) & ix.mask
	}
	ix.slots[p] = v
	ix.n++
}

func (t *Table) indexGrowLocked() {
	ix := &t.index
	old := ix.slots
	ix.slots = make([]uint32, 2*len(old))
	ix.mask = uint32(len(ix.slots) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		k := t.slotKeyLocked(v)
		p := uint32(ix.hash(&k)) & ix.mask
		for ix.slots[p] != 0 {
			p = (p + 1) & ix.mask
		}
		ix.slots[p] = v
	}
}

// indexRemoveLocked removes slot value v, which was inserted for tuple k,
// closing the gap by shifting later members of the probe run back.
func (t *Table) indexRemoveLocked(k *Key, v uint32) {
	ix := &t.index
	p := uint32(ix.hash(k)) & ix.mask
	for ix.slots[p] != v {
		if ix.slots[p] == 0 {
			panic("conntrack: index entry missing")
		}
		p = (p + 1) & ix.mask
	}
	ix.n--
	hole := p
	for q := (p + 1) & ix.mask; ix.slots[q] != 0; q = (q + 1) & ix.mask {
		mk := t.slotKeyLocked(ix.slots[q])
		home := uint32(ix.hash(&mk)) & ix.mask
		// The member at q may fill the hole unless its home lies
		// cyclically in (hole, q].
		if (q-home)&ix.mask >= (q-hole)&ix.mask {
			ix.slots[hole] = ix.slots[q]
			hole = q
		}
	}
	ix.slots[hole] = 0
}
