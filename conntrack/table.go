package conntrack

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Config configures a Table.
type Config struct {
	// Capacity is the maximum number of entries, > 0.
	Capacity int
	// OnFull chooses what Create does when the table is full.
	OnFull OnFull
	// Refresh chooses which packets restart the idle timer.
	Refresh Refresh
	// Timeouts are the idle timeouts; every one must be positive.
	Timeouts Timeouts
	// MaxRetrans is how many repeats of a TCP segment make an entry take the
	// max_retrans timeout (Linux nf_conntrack_tcp_max_retrans); 0 means
	// DefaultMaxRetrans.
	MaxRetrans int
}

// DefaultMaxRetrans is Linux's nf_conntrack_tcp_max_retrans default, 3
// (nf_conntrack_proto_tcp.c, tcp_max_retrans).
const DefaultMaxRetrans = 3

// Packet is what the table needs of one packet; the caller fills it from
// a decoded header and owns it.
type Packet struct {
	Key    Key  // the tuple as on the wire
	Len    int  // bytes counted
	Inside bool // arrived from the inside (RefreshInside counts only these)
	// TCP only.
	TCPFlags uint8 // the flags byte: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10
	Seq, Ack uint32
	Window   uint16 // as on the wire, unscaled
	// HasWScale and WScale are the window scale option of a SYN or SYN-ACK
	// (RFC 7323 2.2: the shift count, of which Linux's tcp_options keeps at
	// most 14); the table reads them only on segments with SYN set.
	HasWScale  bool
	WScale     uint8
	PayloadLen int // bytes of TCP payload (RefreshData counts only segments with payload)
}

// Ref is a handle on an entry, valid until the entry is destroyed (then Get
// reports false, even if the slot is reused). The zero Ref is never valid.
type Ref struct {
	idx, gen uint32
}

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r.gen == 0 }

// ID is the id of the entry r refers to (Entry.ID), 0 for the zero Ref.
func (r Ref) ID() uint64 {
	if r.gen&1 == 0 {
		return 0
	}
	return entryID(r.idx, r.gen)
}

// entryID numbers the entry in slot i with live generation gen: the slot's
// uses before this one in the high 32 bits, the slot plus one in the low
// ones. Ids are unique over the table's life (until a slot is reused 2^31
// times) and small while slots are not reused: 1, 2, 3, ...
func entryID(i, gen uint32) uint64 { return uint64(gen>>1)<<32 | uint64(i+1) }

// Result is what Track or Create did with one packet.
type Result struct {
	Status Status
	// Replied: a packet was seen in the reply direction (Linux
	// IPS_SEEN_REPLY; conntrack -L shows [UNREPLIED] until then).
	Replied         bool
	Ref             Ref // the entry (Hit, Created, Invalid)
	Dir             Dir
	OldState, State TCPState
	Assured         bool
	// Keepalive: the packet is a TCP keepalive probe: ACK only, 0 or 1 byte
	// of payload, seq = (highest seq+len sent in its direction) - 1, with
	// everything before it acknowledged.
	Keepalive bool
	// KeepaliveAck: the packet is the bare ACK answering a keepalive probe.
	KeepaliveAck bool
	// Refreshed: the packet restarted the idle timer (see Refresh).
	Refreshed bool
	// Updated: the packet changed the entry's TCP state, made it assured or
	// was its first reply, what conntrack -E reports as an UPDATE (Status Hit
	// only).
	Updated     bool
	Orig, Reply Key
}

// Entry is a snapshot of one entry.
type Entry struct {
	// ID names the entry for its whole life and no other entry ever has it,
	// as conntrack -L -o id shows Linux's; never 0.
	ID          uint64
	Orig, Reply Key // Reply differs from Orig.Reply() under NAT
	Proto       uint8
	State       TCPState // TCPNone for protocols other than TCP
	// Assured: Linux's IPS_ASSURED, what early drop spares: a TCP handshake
	// completed (or a picked-up flow answered), a UDP flow still active 2 s
	// after its creation with replies; never ICMP.
	Assured bool
	// Replied: a packet was seen in the reply direction (IPS_SEEN_REPLY).
	Replied bool
	Created time.Time
	// LastRefresh is when the idle timer last restarted (exact); the entry
	// expires at LastRefresh + Timeout.
	LastRefresh time.Time
	// LastSeen is when the last packet of the entry was counted, whether
	// or not it restarted the timer; millisecond resolution.
	LastSeen time.Time
	// Timeout is the idle timeout in force: the current state's, or for TCP
	// the one its last refresh chose (CLOSE's after an RST, unacknowledged,
	// max_retrans).
	Timeout time.Duration
	// Per Dir.
	Packets, Bytes [2]uint64
	// TCP, per Dir: NextSeq is the highest seq+len sent (SYN and FIN count
	// one), LastAck the highest ack sent, Window the window of the last
	// segment (unscaled); each valid when SeqKnown or AckKnown says so.
	NextSeq, LastAck [2]uint32
	Window           [2]uint16
	SeqKnown         [2]bool
	AckKnown         [2]bool
	// WindowScale is the window scale shift in force per Dir (0 unless both
	// SYNs carried the option); Unacked says the direction has data in
	// flight; Retrans counts repeats of the last segment (Linux retrans).
	WindowScale [2]uint8
	Unacked     [2]bool
	Retrans     int
	// OrigInside: the packet that created the entry arrived from the inside
	// (Packet.Inside), so the original sender lives on the inside.
	OrigInside bool
}

// RcvNxt is the sequence number the sender of direction d expects next
// from its peer (its rcv.nxt): what an RST toward that sender must carry
// to be accepted by an RFC 5961 stack such as Linux. It is NextSeq of the
// other direction, else LastAck of d; ok is false if neither is known.
// Such an RST should ACK NextSeq[d].
func (e *Entry) RcvNxt(d Dir) (seq uint32, ok bool) {
	if e.SeqKnown[1-d] {
		return e.NextSeq[1-d], true
	}
	if e.AckKnown[d] {
		return e.LastAck[d], true
	}
	return 0, false
}

// EntryInfo is an entry as List reports it.
type EntryInfo struct {
	Entry
	// TimeLeft is the time until the entry expires, > 0.
	TimeLeft time.Duration
}

// Destroyed is an entry a table call destroyed: its last snapshot, why, and
// when (the call's now). Calls that can destroy entries append one to the
// caller's gone slice for each, so that the caller can release what it holds
// for the entry (a NAT mapping, a per-source count), answer its end (the
// RSTs of reset_on_expire) and report it (Event), under its own lock and
// after the call returns. A nil gone means the caller keeps nothing per entry.
type Destroyed struct {
	Entry
	Reason Reason
	At     time.Time
}

// Idle is how long the entry's idle timer had run when it was destroyed: for
// reasons expired and closed, at least its Timeout.
func (d *Destroyed) Idle() time.Duration { return d.At.Sub(d.LastRefresh) }

// Stats are the table's counters since New.
type Stats struct {
	Entries         int                // live and not yet swept entries
	Created         uint64             // entries created
	Destroyed       [NumReasons]uint64 // entries destroyed, per Reason
	Full            uint64             // Create calls refused because the table was full
	Invalid         uint64             // packets found invalid (Track and Create)
	Clash           uint64             // Create calls refused because the reply tuple was in use
	KeepaliveProbes uint64             // TCP keepalive probes seen
}

// Table is the connection table. All methods are safe for concurrent use.
//
// Locking: mu guards everything. Methods with the Locked suffix expect it
// held.
type Table struct {
	mu      sync.Mutex
	cfg     Config
	started bool      // base is set
	base    time.Time // the first time the table was given; times are kept as ns since base
	slab    slab
	index   index
	lru     recency
	wheel   wheel
	stats   Stats
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if cfg.Capacity <= 0 || cfg.Capacity > maxRecords {
		return nil, fmt.Errorf("conntrack: capacity %d out of range: it must be between 1 and %d", cfg.Capacity, maxRecords)
	}
	if err := validOnFull(cfg.OnFull); err != nil {
		return nil, err
	}
	if err := validRefresh(cfg.Refresh); err != nil {
		return nil, err
	}
	if err := cfg.Timeouts.Validate(); err != nil {
		return nil, err
	}
	if err := validMaxRetrans(cfg.MaxRetrans); err != nil {
		return nil, err
	}
	if cfg.MaxRetrans == 0 {
		cfg.MaxRetrans = DefaultMaxRetrans
	}
	t := &Table{cfg: cfg}
	t.slab.init()
	t.index.init()
	t.lru.init(cfg.Capacity)
	t.wheel.init()
	return t, nil
}

func validOnFull(o OnFull) error {
	if int(o) >= len(onFullNames) {
		return fmt.Errorf("conntrack: invalid on-full policy %d", o)
	}
	return nil
}

func validMaxRetrans(n int) error {
	if n < 0 || n > 255 {
		return fmt.Errorf("conntrack: max_retrans %d out of range: it must be between 1 and 255 (0 for the default %d)", n, DefaultMaxRetrans)
	}
	return nil
}

func validRefresh(r Refresh) error {
	if int(r) >= len(refreshNames) {
		return fmt.Errorf("conntrack: invalid refresh rule %d", r)
	}
	return nil
}

// clockLocked converts now to ns since base, fixing base on first use.
func (t *Table) clockLocked(now time.Time) int64 {
	if !t.started {
		t.started = true
		t.base = now
	}
	return int64(now.Sub(t.base))
}

func (t *Table) timeAt(ns int64) time.Time { return t.base.Add(time.Duration(ns)) }

func (t *Table) ref(i uint32) Ref { return Ref{idx: i, gen: t.slab.at(i).gen} }

func (t *Table) replyKeyLocked(i uint32, r *record) Key {
	if r.flags&rfNAT != 0 {
		return *t.slab.natKey(i)
	}
	return Key{Src: r.dst, Dst: r.src, SrcPort: r.dport, DstPort: r.sport, Proto: r.proto}
}

// Track looks up the entry of p's tuple, runs the state machine, counts the
// packet and restarts the idle timer per the refresh rule. It never creates
// (Miss when no live entry has the tuple). A SYN on a TIME_WAIT or CLOSE
// entry opens a new connection: the entry is destroyed (reason closed) and
// Track returns Miss, so that the caller creates the new one as for any
// SYN, as Linux does. An entry found expired
// (now >= last refresh + timeout) counts as missing and is destroyed on the
// spot. Each entry destroyed is appended to gone (see Destroyed). A Hit does
// not allocate.
func (t *Table) Track(p *Packet, now time.Time, gone *[]Destroyed) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	i, dir, ok := t.liveLocked(&p.Key, ns, gone)
	if !ok {
		return Result{Status: Miss}
	}
	return t.trackLocked(i, dir, p, ns, gone)
}

// liveLocked finds the live entry of tuple k, destroying it if expired.
func (t *Table) liveLocked(k *Key, ns int64, gone *[]Destroyed) (uint32, Dir, bool) {
	i, dir, ok := t.findLocked(k)
	if !ok {
		return 0, 0, false
	}
	r := t.slab.at(i)
	if ns >= t.deadlineLocked(r) {
		t.destroyLocked(i, r, t.expiryReason(r), ns, gone)
		return 0, 0, false
	}
	return i, dir, true
}

func (t *Table) trackLocked(i uint32, dir Dir, p *Packet, ns int64, gone *[]Destroyed) (res Result) {
	r := t.slab.at(i)
	old := r.state
	oldFlags, oldFlags2, oldClass := r.flags, r.flags2, r.class()
	wasDroppable := droppable(r)
	var v tcpVerdict // the zero value: accepted, the state's timeout
	if r.proto == ProtoTCP {
		v = t.tcpLocked(r, dir, p)
		switch v.act() {
		case tcpInvalid:
			t.stats.Invalid++
			if v.shrink() {
				t.shrinkLocked(i, r, ns)
			}
			t.resultLocked(&res, i, r, Invalid, dir, old, v, false, false)
			return res
		case tcpReopen:
			t.destroyLocked(i, r, ReasonClosed, ns, gone)
			return Result{Status: Miss}
		case tcpKill:
			r.packets[dir]++
			if p.Len > 0 {
				r.bytes[dir] += uint64(p.Len)
			}
			r.refreshed, r.seenMs = ns, 0
			r.setClass(v.class())
			t.resultLocked(&res, i, r, Hit, dir, old, v, false, false)
			t.destroyLocked(i, r, ReasonClosed, ns, gone)
			return res
		}
		if v.keepalive() {
			t.stats.KeepaliveProbes++
		}
	} else {
		t.otherLocked(r, ns)
		v = v.withClass(oldClass)
	}
	if dir == Reply && r.flags2&rf2Replied == 0 {
		// Linux's nf_conntrack_in sets IPS_SEEN_REPLY after the protocol's
		// handler: the first reply itself is judged as unreplied.
		r.flags2 |= rf2Replied
	}

	r.packets[dir]++
	if p.Len > 0 {
		r.bytes[dir] += uint64(p.Len)
	}
	changed := r.state != old || (r.flags^oldFlags)&rfAssured != 0
	refresh := changed || v.act() != tcpIgnore && t.refreshesLocked(r.proto, p, v.keepalive(), v.keepaliveAck())
	// A refresh moves the deadline earlier after SetTimeLeft pushed the timer
	// past now, or when it takes a shorter timeout class: then, as for a state
	// change, the wheel must know.
	retime := changed
	if refresh {
		retime = retime || r.refreshed > ns
		r.refreshed = ns
		r.seenMs = 0
		if v.class() != oldClass {
			r.setClass(v.class())
			retime = true
		}
	} else {
		r.seenMs = sinceMs(ns, r.refreshed)
	}
	if d := droppable(r); d != wasDroppable {
		t.lru.move(i, wasDroppable)
	} else if refresh {
		t.lru.touch(i, d)
	}
	if retime {
		t.retimeLocked(i, r)
	}
	updated := changed || (r.flags2^oldFlags2)&rf2Replied != 0
	t.resultLocked(&res, i, r, Hit, dir, old, v, refresh, updated)
	return res
}

// resultLocked fills res, the caller's return value, with the Result of a packet
// of entry i (record r) from dir that found it in state old.
func (t *Table) resultLocked(res *Result, i uint32, r *record, st Status, dir Dir, old TCPState, v tcpVerdict, refreshed, updated bool) {
	res.Status, res.Replied, res.Ref, res.Dir = st, r.flags2&rf2Replied != 0, t.ref(i), dir
	res.OldState, res.State, res.Assured = old, r.state, r.flags&rfAssured != 0
	res.Keepalive, res.KeepaliveAck, res.Refreshed, res.Updated = v.keepalive(), v.keepaliveAck(), refreshed, updated
	res.Orig, res.Reply = r.origKey(), t.replyKeyLocked(i, r)
}

// udpStreamAfter is how long after its creation a replied UDP flow must still be
// active to become a stream: Linux's nf_conntrack_udp_packet sets stream_ts to
// creation + 2 s and gives the stream timeout (and ASSURED) only to a packet
// after it.
const udpStreamAfter = int64(2 * time.Second)

// otherLocked is the state machine of a protocol other than TCP, before the
// packet's replied mark: a UDP flow that has seen a reply and is still active
// more than 2 s after its creation becomes assured and takes the stream timeout
// (udp_timeout_stream); a request answered once keeps the unreplied timeout.
// ICMP and other protocols are never assured (nf_conntrack_icmp_packet and
// generic_packet only refresh).
func (t *Table) otherLocked(r *record, ns int64) {
	if r.proto == ProtoUDP && r.flags&rfAssured == 0 && r.flags2&rf2Replied != 0 && ns-r.created > udpStreamAfter {
		r.flags |= rfAssured
	}
}

// shrinkLocked gives an assured entry that met an out-of-window RST after its
// peer's FIN or RST the unacknowledged timeout from now, if it has at least
// 120 s left and more than that (Linux nf_tcp_handle_invalid).
func (t *Table) shrinkLocked(i uint32, r *record, ns int64) {
	left := t.deadlineLocked(r) - ns
	if left < int64(120*time.Second) || left <= int64(t.cfg.Timeouts.TCPUnacknowledged) {
		return
	}
	seen := r.refreshed + int64(r.seenMs)*int64(time.Millisecond)
	r.refreshed = ns
	r.seenMs = sinceMs(seen, ns)
	r.setClass(classUnack)
	t.retimeLocked(i, r)
}

// refreshesLocked applies the refresh rule to a packet that did not change
// the entry's state; keepalive and keepaliveAck say what the packet is.
func (t *Table) refreshesLocked(proto uint8, p *Packet, keepalive, keepaliveAck bool) bool {
	switch t.cfg.Refresh {
	case RefreshInside:
		return p.Inside
	case RefreshData:
		return proto != ProtoTCP || p.PayloadLen > 0 && !keepalive
	case RefreshNoKeepalive:
		return !keepalive && !keepaliveAck
	}
	return true
}

func sinceMs(ns, from int64) uint32 {
	d := (ns - from) / int64(time.Millisecond)
	switch {
	case d < 0:
		return 0
	case d > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(d)
}

// Create makes an entry for p, whose reply tuple is reply: p.Key.Reply()
// without NAT, the translated tuple with it. TCP must be a SYN (the entry
// starts in SYN_SENT) unless pickup is set, when a mid-stream ACK segment
// also creates an entry, in ESTABLISHED (Linux nf_conntrack_tcp_loose=1);
// any other TCP segment is Invalid. UDP and ICMP entries start unreplied.
//
// When p's tuple already belongs to a live entry, Create tracks p against it
// like Track (a SYN on a TIME_WAIT or CLOSE entry ends it, reason closed,
// and creates the new one). When the reply tuple does (either direction of another
// entry), Create returns Clash. When the table is full, expired entries are
// reclaimed first, then the OnFull policy decides: EvictLRU destroys the
// least recently active entry, EarlyDrop the least recently active
// droppable one (or returns Full), DropNew returns Full. Each entry
// destroyed on the way is appended to gone.
func (t *Table) Create(p *Packet, now time.Time, reply Key, pickup bool, gone *[]Destroyed) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	if i, dir, ok := t.liveLocked(&p.Key, ns, gone); ok {
		if res := t.trackLocked(i, dir, p, ns, gone); res.Status != Miss {
			return res
		}
		// A SYN ended a closed entry: go on to create its successor.
	}
	// For a plain entry reply is p.Key.Reply(): a NATed entry may own that
	// tuple exactly, and this entry would answer for it too.
	nat := reply != p.Key.Reply()
	if _, _, ok := t.liveLocked(&reply, ns, gone); ok {
		t.stats.Clash++
		return Result{Status: Clash}
	}
	if p.Key.Proto == ProtoTCP && !CanOpen(p.TCPFlags, pickup) {
		t.stats.Invalid++
		return Result{Status: Invalid}
	}
	if t.slab.live >= t.cfg.Capacity && !t.makeRoomLocked(ns, gone) {
		t.stats.Full++
		return Result{Status: Full}
	}

	i := t.slab.alloc()
	r := t.slab.at(i)
	k := p.Key
	r.src, r.dst, r.sport, r.dport, r.proto = k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto
	r.created, r.refreshed = ns, ns
	res := Result{Status: Created, Ref: t.ref(i), Dir: Original, OldState: TCPNone, Refreshed: true, Orig: k, Reply: reply}
	if k.Proto == ProtoTCP {
		// tcp_new, then the segment through the state machine as any other:
		// from NONE a SYN leads to SYN_SENT, a picked-up segment to ESTABLISHED.
		tcpNewLocked(r, p, pickup)
		r.setClass(t.tcpLocked(r, Original, p).class())
	}
	if p.Inside {
		r.flags2 |= rf2OrigInside
	}
	r.packets[Original] = 1
	if p.Len > 0 {
		r.bytes[Original] = uint64(p.Len)
	}
	if nat {
		r.flags |= rfNAT
		*t.slab.setNAT(i) = reply
	}
	t.indexInsertLocked(&k, slotValue(i, 0))
	if nat {
		t.indexInsertLocked(&reply, slotValue(i, 1))
	}
	t.lru.add(i, droppable(r))
	t.fileLocked(i, r)
	t.stats.Created++
	res.State = r.state
	return res
}

// makeRoomLocked frees one slot in a full table: an expired entry if there
// is one, else a victim of the OnFull policy. It reports false if none.
func (t *Table) makeRoomLocked(ns int64, gone *[]Destroyed) bool {
	if t.sweepLocked(ns, 1, gone) > 0 {
		return true
	}
	var (
		i  uint32
		ok bool
	)
	switch t.cfg.OnFull {
	case EvictLRU:
		i, ok = t.oldestLocked()
	case EarlyDrop:
		i, ok = t.lru.oldestDroppable()
	}
	if !ok {
		return false
	}
	t.destroyLocked(i, t.slab.at(i), ReasonEvicted, ns, gone)
	return true
}

// destroyLocked removes entry i (record r) from every structure, counts it,
// appends it to gone (unless nil) and frees the slot.
func (t *Table) destroyLocked(i uint32, r *record, reason Reason, ns int64, gone *[]Destroyed) {
	if gone != nil {
		*gone = append(*gone, Destroyed{Entry: t.entryLocked(i, r), Reason: reason, At: t.timeAt(ns)})
	}
	k := r.origKey()
	t.indexRemoveLocked(&k, slotValue(i, 0))
	if r.flags&rfNAT != 0 {
		rk := *t.slab.natKey(i)
		t.indexRemoveLocked(&rk, slotValue(i, 1))
	}
	t.lru.remove(i, droppable(r))
	t.unfileLocked(r)
	t.slab.release(i)
	t.stats.Destroyed[reason]++
}

func (t *Table) entryLocked(i uint32, r *record) Entry {
	e := Entry{
		ID:          entryID(i, r.gen),
		Orig:        r.origKey(),
		Reply:       t.replyKeyLocked(i, r),
		Proto:       r.proto,
		State:       r.state,
		Assured:     r.flags&rfAssured != 0,
		Replied:     r.flags2&rf2Replied != 0,
		Created:     t.timeAt(r.created),
		LastRefresh: t.timeAt(r.refreshed),
		LastSeen:    t.timeAt(r.refreshed + int64(r.seenMs)*int64(time.Millisecond)),
		Timeout:     t.timeoutLocked(r),
		Packets:     r.packets,
		Bytes:       r.bytes,
		NextSeq:     r.nextSeq,
		LastAck:     r.lastAck,
		Window:      r.window,
		Retrans:     int(r.retrans),
	}
	e.OrigInside = r.flags2&rf2OrigInside != 0
	for d := Original; d <= Reply; d++ {
		e.SeqKnown[d] = r.flags&seqKnownBit(d) != 0
		e.AckKnown[d] = r.flags&ackKnownBit(d) != 0
		e.WindowScale[d] = r.scaleOf(d)
		e.Unacked[d] = r.flags3&unackedBit(d) != 0
	}
	return e
}

// Lookup reports whether tuple k (in either direction) belongs to a live
// entry. An expired entry found is destroyed and appended to gone.
func (t *Table) Lookup(k Key, now time.Time, gone *[]Destroyed) (Ref, Dir, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	i, dir, ok := t.liveLocked(&k, ns, gone)
	if !ok {
		return Ref{}, 0, false
	}
	return t.ref(i), dir, true
}

// Get returns a snapshot of the entry r refers to, or false if it was
// destroyed. An entry past its deadline that no lookup or sweep has
// destroyed yet is still returned.
func (t *Table) Get(r Ref) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, rec, ok := t.resolveLocked(r)
	if !ok {
		return Entry{}, false
	}
	return t.entryLocked(i, rec), true
}

// Sweep destroys up to budget entries whose deadline is at or before now
// (reason expired, or closed for TIME_WAIT and CLOSE) and returns how many.
// It never destroys an entry early, and destroys each entry at the first
// call at or after its deadline, budget permitting (a call that runs out
// of budget resumes where it stopped): called every 20-50 ms, it reports
// every expiry within one call interval of its deadline. Each entry
// destroyed is appended to gone.
func (t *Table) Sweep(now time.Time, budget int, gone *[]Destroyed) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sweepLocked(t.clockLocked(now), budget, gone)
}

// Select returns handles on entries, in no particular order: with a nil
// match, every entry held (expired ones not yet destroyed included, as a
// flush takes them); otherwise the entries live at now for which match
// reports true. match runs with the table lock held and must not call the
// table; its argument is valid only during the call.
//
// The handles go to Destroy or SetTimeLeft, which skip any entry destroyed
// in between: a caller may act on a large selection in chunks, releasing
// its own lock between them.
func (t *Table) Select(now time.Time, match func(*EntryInfo) bool) []Ref {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	var out []Ref
	if match == nil {
		out = make([]Ref, 0, t.slab.live)
	}
	var info EntryInfo
	for i := uint32(0); i < t.slab.used; i++ {
		r := t.slab.at(i)
		if !r.live() {
			continue
		}
		if match != nil {
			left := t.deadlineLocked(r) - ns
			if left <= 0 {
				continue
			}
			info = EntryInfo{Entry: t.entryLocked(i, r), TimeLeft: time.Duration(left)}
			if !match(&info) {
				continue
			}
		}
		out = append(out, t.ref(i))
	}
	return out
}

// resolveLocked returns the slot of the live entry ref names.
func (t *Table) resolveLocked(ref Ref) (uint32, *record, bool) {
	if ref.gen&1 == 0 || ref.idx >= t.slab.used {
		return 0, nil, false
	}
	r := t.slab.at(ref.idx)
	if r.gen != ref.gen {
		return 0, nil, false
	}
	return ref.idx, r, true
}

// Destroy destroys the entries refs name that are still held, for reason,
// appends each to gone and returns how many. reason is ReasonDeleted (an
// operator's conntrack -D: the flow's next packet finds no entry) or
// ReasonFlushed (everything at once, a middlebox reboot); the other reasons
// are the table's own verdicts on an entry, which it gives itself.
func (t *Table) Destroy(refs []Ref, reason Reason, now time.Time, gone *[]Destroyed) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	n := 0
	for _, ref := range refs {
		if i, r, ok := t.resolveLocked(ref); ok {
			t.destroyLocked(i, r, reason, ns, gone)
			n++
		}
	}
	return n
}

// SetTimeLeft makes each live entry refs names expire left after now, as
// conntrack -U --timeout does, and returns how many it changed; a negative
// left counts as 0, which makes the entries due at now. The entry's idle
// timer is moved (LastRefresh becomes now + left - Timeout), so that
// expiry, at lookup or by Sweep, takes the one path an idle timeout takes:
// the same reason (expired, or closed in TIME_WAIT and CLOSE) and an Idle
// of at least Timeout. The next packet that refreshes the entry restarts
// its normal timeout. LastSeen is kept, unless left is longer than Timeout:
// then it reads no earlier than the moved LastRefresh.
func (t *Table) SetTimeLeft(refs []Ref, left time.Duration, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	left = max(left, 0)
	n := 0
	for _, ref := range refs {
		i, r, ok := t.resolveLocked(ref)
		if !ok || ns >= t.deadlineLocked(r) {
			continue
		}
		seen := r.refreshed + int64(r.seenMs)*int64(time.Millisecond)
		r.refreshed = ns + int64(left) - int64(t.timeoutLocked(r))
		r.seenMs = sinceMs(seen, r.refreshed)
		t.retimeLocked(i, r)
		n++
	}
	return n
}

// List returns a snapshot of the live entries, in no particular order.
// Entries past their deadline are left out (and left for Sweep).
func (t *Table) List(now time.Time) []EntryInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.clockLocked(now)
	out := make([]EntryInfo, 0, t.slab.live)
	for i := uint32(0); i < t.slab.used; i++ {
		r := t.slab.at(i)
		if !r.live() {
			continue
		}
		left := t.deadlineLocked(r) - ns
		if left <= 0 {
			continue
		}
		out = append(out, EntryInfo{Entry: t.entryLocked(i, r), TimeLeft: time.Duration(left)})
	}
	return out
}

// Len is the number of entries held, including expired ones not yet
// destroyed by a lookup or Sweep.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.slab.live
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	s := t.stats
	s.Entries = t.slab.live
	t.mu.Unlock()
	return s
}

// Config returns the current configuration, with the live changes made by
// SetTimeouts, SetRefresh and SetOnFull.
func (t *Table) Config() Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg
}

// SetTimeouts replaces the timeouts. They apply at once to every entry,
// from its last refresh: shrinking a timeout can make entries due now,
// which the next lookup or Sweep destroys.
func (t *Table) SetTimeouts(to Timeouts) error {
	if err := to.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.Timeouts = to
	for i := uint32(0); i < t.slab.used; i++ {
		if r := t.slab.at(i); r.live() {
			t.retimeLocked(i, r)
		}
	}
	return nil
}

// SetRefresh replaces the refresh rule for the packets that follow.
func (t *Table) SetRefresh(r Refresh) error {
	if err := validRefresh(r); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.Refresh = r
	return nil
}

// SetMaxRetrans replaces Config.MaxRetrans (0 means DefaultMaxRetrans) for the
// segments that follow.
func (t *Table) SetMaxRetrans(n int) error {
	if err := validMaxRetrans(n); err != nil {
		return err
	}
	if n == 0 {
		n = DefaultMaxRetrans
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.MaxRetrans = n
	return nil
}

// SetOnFull replaces the table-full policy.
func (t *Table) SetOnFull(o OnFull) error {
	if err := validOnFull(o); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.OnFull = o
	return nil
}
