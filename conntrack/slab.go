package conntrack

// record is one entry in the slab. It is pointer-free and 128 bytes (a test
// pins the size): the garbage collector never scans the slab and a million
// flows cost a few hundred chunk pointers. Times are nanoseconds since the
// table's base time (the first time passed to it).
type record struct {
	refreshed int64 // when the idle timer last restarted
	created   int64
	packets   [2]uint64 // per Dir
	bytes     [2]uint64 // per Dir

	gen          uint32    // odd while the slot holds a live entry; Ref checks it
	wnext, wprev uint32    // timing-wheel list links (wnext also links the free list)
	nextSeq      [2]uint32 // per Dir: highest seq+len (SYN and FIN count 1) sent
	lastAck      [2]uint32 // per Dir: highest ack sent
	seenMs       uint32    // last packet minus refreshed, in ms, saturating

	src, dst     [16]byte // the original tuple
	sport, dport uint16
	window       [2]uint16 // per Dir: window of the last packet, unscaled
	bucket       uint16    // timing-wheel bucket while filed

	proto  uint8
	state  TCPState
	flags  uint8 // rf* bits
	flags2 uint8 // rf2* bits
}

// record.flags bits.
const (
	rfAssured   = 1 << iota // both directions seen (TCP: handshake completed)
	rfNAT                   // the reply tuple is not the original's Reply(): kept in slab.nat
	rfSeqKnown0             // nextSeq[Original] valid
	rfSeqKnown1             // nextSeq[Reply] valid
	rfAckKnown0             // lastAck[Original] valid
	rfAckKnown1             // lastAck[Reply] valid
	rfProbe0                // a keepalive probe from Original awaits its answer
	rfProbe1                // a keepalive probe from Reply awaits its answer
)

// record.flags2 bits.
const (
	rf2SimOpen    = 1 << iota // SYN_SENT2 was passed: simultaneous open
	rf2OrigInside             // the original direction's first packet arrived from the inside
)

func seqKnownBit(d Dir) uint8 { return rfSeqKnown0 << d }
func ackKnownBit(d Dir) uint8 { return rfAckKnown0 << d }
func probeBit(d Dir) uint8    { return rfProbe0 << d }

func (r *record) live() bool { return r.gen&1 == 1 }

func (r *record) origKey() Key {
	return Key{Src: r.src, Dst: r.dst, SrcPort: r.sport, DstPort: r.dport, Proto: r.proto}
}

// matchOrig reports whether k is the original tuple.
func (r *record) matchOrig(k *Key) bool {
	return k.SrcPort == r.sport && k.DstPort == r.dport && k.Proto == r.proto && k.Src == r.src && k.Dst == r.dst
}

// matchOrigReply reports whether k is the original tuple reversed.
func (r *record) matchOrigReply(k *Key) bool {
	return k.SrcPort == r.dport && k.DstPort == r.sport && k.Proto == r.proto && k.Src == r.dst && k.Dst == r.src
}

const (
	chunkBits = 12
	chunkSize = 1 << chunkBits // records per chunk: 512 KiB
	chunkMask = chunkSize - 1
	noIndex   = ^uint32(0)
	// maxRecords keeps slab indices below 2^31, as index slots need one bit.
	maxRecords = 1<<31 - 1
)

// MaxCapacity is the largest Config.Capacity a table takes.
const MaxCapacity = maxRecords

// slab stores records in fixed chunks that never move, reusing freed slots
// through a free list. The reply tuples of NATed entries are kept beside
// them, in chunks of keys allocated when a chunk first holds a NATed entry,
// so that plain flows do not pay for them.
type slab struct {
	chunks [][]record
	nat    [][]Key // parallel to chunks; nil until needed
	free   uint32  // head of the free list, linked through wnext
	used   uint32  // slots ever handed out; slots >= used are untouched
	live   int
}

func (s *slab) init() { s.free = noIndex }

func (s *slab) at(i uint32) *record { return &s.chunks[i>>chunkBits][i&chunkMask] }

// alloc returns a slot for a new entry with a fresh odd generation.
func (s *slab) alloc() uint32 {
	var i uint32
	if s.free != noIndex {
		i = s.free
		s.free = s.at(i).wnext
	} else {
		if int(s.used) == len(s.chunks)*chunkSize {
			s.chunks = append(s.chunks, make([]record, chunkSize))
			s.nat = append(s.nat, nil)
		}
		i = s.used
		s.used++
	}
	r := s.at(i)
	gen := r.gen + 1
	*r = record{gen: gen}
	s.live++
	return i
}

// release returns slot i to the free list; its generation becomes even so
// that Refs to it stop resolving.
func (s *slab) release(i uint32) {
	r := s.at(i)
	r.gen++
	r.wnext = s.free
	s.free = i
	s.live--
}

// natKey is the reply tuple of NATed entry i.
func (s *slab) natKey(i uint32) *Key { return &s.nat[i>>chunkBits][i&chunkMask] }

// setNAT makes room for the reply tuple of entry i and returns it.
func (s *slab) setNAT(i uint32) *Key {
	c := i >> chunkBits
	if s.nat[c] == nil {
		s.nat[c] = make([]Key, chunkSize)
	}
	return &s.nat[c][i&chunkMask]
}
