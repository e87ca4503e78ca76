package conntrack

import (
	"net/netip"
	"testing"
	"time"
)

// t0 is the virtual clock's origin.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	fin = flagFIN
	syn = flagSYN
	rst = flagRST
	psh = flagPSH
	ack = flagACK
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// The usual flow: client inside, server outside.
var (
	cli    = ap("198.18.0.2:40000")
	srv    = ap("198.19.0.2:80")
	tcpKey = MakeKey(ProtoTCP, cli, srv)
	udpKey = MakeKey(ProtoUDP, ap("198.18.0.2:5353"), ap("198.19.0.2:53"))
)

// nthKey is a distinct tuple per n.
func nthKey(proto uint8, n int) Key {
	src := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	return MakeKey(proto, netip.AddrPortFrom(src, uint16(1024+n%50000)), srv)
}

// tcp4 builds a TCP packet with the given flags, seq and ack; the payload
// length is set with withData.
func tcp4(k Key, flags uint8, seq, ack uint32) *Packet {
	return &Packet{Key: k, Len: 40, TCPFlags: flags, Seq: seq, Ack: ack, Window: 1000}
}

func withData(p *Packet, n int) *Packet {
	p.PayloadLen = n
	p.Len += n
	return p
}

func inside(p *Packet) *Packet {
	p.Inside = true
	return p
}

func udp4(k Key, n int) *Packet { return &Packet{Key: k, Len: 28 + n, PayloadLen: n} }

// testTable is the table under test. Its methods without a gone argument act
// as the table's owner does: they collect the entries each call destroyed
// (in destroyed) and the events an owner publishes from the results (NEW
// for Created, UPDATE for Updated, DESTROY for each destroyed entry, in
// that order within a call) in events.
type testTable struct {
	*Table
	destroyed destroyed
	events    []Event
	gone      []Destroyed
}

func newTable(tb testing.TB, mods ...func(*Config)) *testTable {
	tb.Helper()
	cfg := Config{Capacity: 1024, Timeouts: DefaultTimeouts()}
	for _, m := range mods {
		m(&cfg)
	}
	tab, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &testTable{Table: tab}
}

func (t *testTable) Track(p *Packet, now time.Time) Result {
	res := t.Table.Track(p, now, &t.gone)
	t.settle(res, now)
	return res
}

func (t *testTable) Create(p *Packet, now time.Time, reply Key, pickup bool) Result {
	res := t.Table.Create(p, now, reply, pickup, &t.gone)
	t.settle(res, now)
	return res
}

func (t *testTable) Lookup(k Key, now time.Time) (Ref, Dir, bool) {
	ref, d, ok := t.Table.Lookup(k, now, &t.gone)
	t.settle(Result{}, now)
	return ref, d, ok
}

func (t *testTable) Sweep(now time.Time, budget int) int {
	n := t.Table.Sweep(now, budget, &t.gone)
	t.settle(Result{}, now)
	return n
}

// Flush destroys every entry, reason flushed.
func (t *testTable) Flush(now time.Time) int {
	n := t.Table.Destroy(t.Table.Select(now, nil), ReasonFlushed, now, &t.gone)
	t.settle(Result{}, now)
	return n
}

func (t *testTable) settle(res Result, now time.Time) {
	for i := range t.gone {
		d := &t.gone[i]
		t.destroyed.entries = append(t.destroyed.entries, d.Entry)
		t.destroyed.reasons = append(t.destroyed.reasons, d.Reason)
		t.events = append(t.events, d.Event())
	}
	t.gone = t.gone[:0]
	typ := EventNew
	switch {
	case res.Status == Created:
	case (res.Status == Hit) && res.Updated:
		typ = EventUpdate
	default:
		return
	}
	e, ok := t.Get(res.Ref)
	if !ok {
		panic("conntrack test: the entry of a result is gone")
	}
	ev := e.Event(typ, now)
	if typ == EventUpdate {
		ev.OldState = res.OldState
	}
	t.events = append(t.events, ev)
}

// destroyed are the entries destroyed, with their reasons.
type destroyed struct {
	entries []Entry
	reasons []Reason
}

// flow drives one TCP connection, keeping each side's sequence numbers so
// that steps only name direction, flags and payload.
type flow struct {
	tb  testing.TB
	tab *testTable
	key Key       // original tuple
	rep Key       // reply tuple as on the wire
	nxt [2]uint32 // next seq per Dir
	now time.Time
	// opened: the first segment went through Create.
	opened bool
	pickup bool
}

func newFlow(tb testing.TB, tab *testTable, k Key) *flow {
	return &flow{tb: tb, tab: tab, key: k, rep: k.Reply(), nxt: [2]uint32{1000, 5000}, now: t0}
}

func (f *flow) wire(d Dir) Key {
	if d == Original {
		return f.key
	}
	return f.rep
}

// pkt builds the next segment from d: seq is d's next, ack the peer's next.
func (f *flow) pkt(d Dir, flags uint8, payload int) *Packet {
	p := withData(tcp4(f.wire(d), flags, f.nxt[d], f.nxt[1-d]), payload)
	p.Inside = d == Original
	return p
}

// advance moves d's sequence past p.
func (f *flow) advance(d Dir, p *Packet) { f.nxt[d] = segEnd(p) }

// send tracks a segment (Create for the very first one) and advances the
// sender's sequence when the segment was accepted.
func (f *flow) send(d Dir, flags uint8, payload int) Result {
	f.tb.Helper()
	p := f.pkt(d, flags, payload)
	var res Result
	if !f.opened {
		f.opened = true
		res = f.tab.Create(p, f.now, f.rep, f.pickup)
	} else {
		res = f.tab.Track(p, f.now)
	}
	if res.Status == Hit || res.Status == Created {
		f.advance(d, p)
	}
	return res
}

// handshake opens the flow to ESTABLISHED.
func (f *flow) handshake() {
	f.tb.Helper()
	for _, s := range []struct {
		d     Dir
		flags uint8
	}{{Original, syn}, {Reply, syn | ack}, {Original, ack}} {
		if r := f.send(s.d, s.flags, 0); r.Status != Hit && r.Status != Created {
			f.tb.Fatalf("handshake %v %#x: %v", s.d, s.flags, r.Status)
		}
	}
}

// checkKeys asserts that res names the flow's tuples and the direction of
// the packet's tuple.
func checkKeys(tb testing.TB, res Result, orig, reply Key, d Dir) {
	tb.Helper()
	if res.Orig != orig || res.Reply != reply {
		tb.Errorf("tuples %v / %v, want %v / %v", res.Orig, res.Reply, orig, reply)
	}
	if res.Dir != d {
		tb.Errorf("dir %v, want %v", res.Dir, d)
	}
}

// collect takes the events recorded so far.
func collect(t *testTable) []Event {
	evs := t.events
	t.events = nil
	return evs
}
