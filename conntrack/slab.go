package conntrack

// record is one entry in the slab. It is pointer-free and 144 bytes (a test
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
	nextSeq      [2]uint32 // per Dir: highest seq+len (SYN and FIN count 1) sent (Linux td_end)
	lastAck      [2]uint32 // per Dir: highest ack sent (Linux td_maxack)
	seenMs       uint32    // last packet minus refreshed, in ms, saturating

	// The last segment the TCP tracker looked at, as Linux's struct ip_ct_tcp
	// keeps it (last_seq, last_ack, last_end, last_win; last_dir, last_index
	// and last_wscale are in last): retransmissions, RST trains and the
	// resynchronisation after an ignored SYN are judged against it.
	lastSeq, lastAckSeen, lastEnd uint32

	src, dst     [16]byte // the original tuple
	sport, dport uint16
	window       [2]uint16 // per Dir: window of the last packet, as on the wire
	lastWin      uint16    // Linux last_win
	bucket       uint16    // timing-wheel bucket while filed

	proto   uint8
	state   TCPState
	flags   uint8 // rf* bits
	flags2  uint8 // rf2* bits
	flags3  uint8 // rf3* bits and the timeout class (rf3ClassMask)
	last    uint8 // bit 0 last_dir, bits 1-3 last_index (a segment class), bits 4-7 last_wscale
	scale   uint8 // window scale shift per Dir: bits 0-3 Original, 4-7 Reply (Linux td_scale)
	retrans uint8 // Linux retrans: repeats of the last ACK-class segment, saturating
}

// record.flags bits.
const (
	rfAssured   = 1 << iota // Linux IPS_ASSURED: TCP handshake completed, UDP stream (see udpLocked)
	rfNAT                   // the reply tuple is not the original's Reply(): kept in slab.nat
	rfSeqKnown0             // nextSeq[Original] valid
	rfSeqKnown1             // nextSeq[Reply] valid
	rfAckKnown0             // lastAck[Original] valid (Linux IP_CT_TCP_FLAG_MAXACK_SET)
	rfAckKnown1             // lastAck[Reply] valid
	rfProbe0                // a keepalive probe from Original awaits its answer
	rfProbe1                // a keepalive probe from Reply awaits its answer
)

// record.flags2 bits.
const (
	rf2SimOpen    = 1 << iota // SYN_SENT2 was passed: simultaneous open (IP_CT_TCP_SIMULTANEOUS_OPEN)
	rf2OrigInside             // the original direction's first packet arrived from the inside
	rf2Replied                // a packet was seen in the reply direction (Linux IPS_SEEN_REPLY)
	rf2Liberal                // a picked-up flow: window checks never fail (IP_CT_TCP_FLAG_BE_LIBERAL)
	rf2Challenge              // an ignored SYN in LAST_ACK may draw a challenge ACK (IP_CT_EXP_CHALLENGE_ACK)
	rf2LastWScale             // the last ignored SYN carried a window scale option (last_flags)
	rf2SynWin0                // window[Original] came from a SYN: never scaled
	rf2SynWin1                // window[Reply] came from a SYN
)

// record.flags3 bits, per Dir where a pair, and the timeout class in the top two bits.
const (
	rf3Unacked0   = 1 << iota // Original sent data not yet acknowledged (IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED)
	rf3Unacked1               // Reply likewise
	rf3CloseInit0             // Original started the close: a FIN (IP_CT_TCP_FLAG_CLOSE_INIT)
	rf3CloseInit1             // Reply likewise
	rf3WScale0                // Original's SYN carried a window scale option (IP_CT_TCP_FLAG_WINDOW_SCALE)
	rf3WScale1                // Reply's likewise

	rf3ClassShift = 6
	rf3ClassMask  = 3 << rf3ClassShift
)

func seqKnownBit(d Dir) uint8  { return rfSeqKnown0 << d }
func ackKnownBit(d Dir) uint8  { return rfAckKnown0 << d }
func probeBit(d Dir) uint8     { return rfProbe0 << d }
func synWinBit(d Dir) uint8    { return rf2SynWin0 << d }
func unackedBit(d Dir) uint8   { return rf3Unacked0 << d }
func closeInitBit(d Dir) uint8 { return rf3CloseInit0 << d }
func wscaleBit(d Dir) uint8    { return rf3WScale0 << d }

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

// The packed fields of record.last and record.scale.

func (r *record) lastDir() Dir      { return Dir(r.last & 1) }
func (r *record) lastIndex() int    { return int(r.last>>1) & 7 }
func (r *record) lastWScale() uint8 { return r.last >> 4 }

func (r *record) setLast(d Dir, index int) { r.last = r.last&0xf0 | uint8(index)<<1 | uint8(d) }
func (r *record) setLastWScale(s uint8)    { r.last = r.last&0x0f | s<<4 }

func (r *record) scaleOf(d Dir) uint8 { return r.scale >> (4 * d) & 0xf }

func (r *record) setScale(d Dir, s uint8) {
	sh := 4 * d
	r.scale = r.scale&^(0xf<<sh) | (s&0xf)<<sh
}

// class is the timeout class chosen at the last refresh.
func (r *record) class() timeoutClass { return timeoutClass(r.flags3 >> rf3ClassShift) }

func (r *record) setClass(c timeoutClass) {
	r.flags3 = r.flags3&^rf3ClassMask | uint8(c)<<rf3ClassShift
}
