package conntrack

import (
	"math/rand/v2"
	"testing"
	"time"
)

type step struct {
	d      Dir
	flags  uint8
	data   int
	status Status
	state  TCPState
}

const (
	o = Original
	r = Reply
)

var handshake = []step{
	{o, syn, 0, Created, TCPSynSent},
	{r, syn | ack, 0, Hit, TCPSynRecv},
	{o, ack, 0, Hit, TCPEstablished},
}

func seq(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestTCPTransitions(t *testing.T) {
	cases := []struct {
		name    string
		steps   []step
		assured bool
	}{
		{"handshake", handshake, true},
		{"simultaneous open, reply ACK completes", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn, 0, Hit, TCPSynSent2},
			{o, syn | ack, 0, Hit, TCPSynRecv},
			{r, syn | ack, 0, Hit, TCPSynRecv}, // ignored
			{r, ack, 0, Hit, TCPEstablished},
			{o, ack, 0, Hit, TCPEstablished},
		}, true},
		{"simultaneous open, original ACK completes", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn, 0, Hit, TCPSynSent2},
			{r, syn | ack, 0, Hit, TCPSynRecv},
			{o, ack, 0, Hit, TCPEstablished},
		}, true},
		{"data both ways", seq(handshake, []step{
			{o, psh | ack, 100, Hit, TCPEstablished},
			{r, psh | ack, 300, Hit, TCPEstablished},
			{o, ack, 0, Hit, TCPEstablished},
		}), true},
		{"client closes first", seq(handshake, []step{
			{o, fin | ack, 0, Hit, TCPFinWait},
			{r, ack, 0, Hit, TCPCloseWait},
			{r, fin | ack, 0, Hit, TCPLastAck},
			{o, ack, 0, Hit, TCPTimeWait},
		}), true},
		{"server closes first", seq(handshake, []step{
			{r, fin | ack, 0, Hit, TCPFinWait},
			{o, ack, 0, Hit, TCPCloseWait},
			{o, fin | ack, 0, Hit, TCPLastAck},
			{r, ack, 0, Hit, TCPTimeWait},
		}), true},
		{"FINs cross", seq(handshake, []step{
			{o, fin | ack, 0, Hit, TCPFinWait},
			{r, fin | ack, 0, Hit, TCPLastAck},
			{o, ack, 0, Hit, TCPTimeWait},
			{r, ack, 0, Hit, TCPTimeWait},
		}), true},
		{"FIN during handshake", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn | ack, 0, Hit, TCPSynRecv},
			{o, fin | ack, 0, Hit, TCPFinWait},
		}, false},
		{"client RST", seq(handshake, []step{{o, rst | ack, 0, Hit, TCPClose}}), true},
		{"server RST", seq(handshake, []step{{r, rst, 0, Hit, TCPClose}}), true},
		{"RST in SYN_RECV", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn | ack, 0, Hit, TCPSynRecv},
			{o, rst, 0, Hit, TCPClose},
		}, false},
		{"SYN retransmitted", []step{
			{o, syn, 0, Created, TCPSynSent},
			{o, syn, 0, Hit, TCPSynSent},
		}, false},
		{"ACK before SYN-ACK is invalid", []step{
			{o, syn, 0, Created, TCPSynSent},
			{o, ack, 0, Invalid, TCPSynSent},
		}, false},
		{"FIN in SYN_SENT is invalid", []step{
			{o, syn, 0, Created, TCPSynSent},
			{o, fin, 0, Invalid, TCPSynSent},
			{r, fin | ack, 0, Invalid, TCPSynSent},
		}, false},
		{"SYN-ACK from the client is invalid", []step{
			{o, syn, 0, Created, TCPSynSent},
			{o, syn | ack, 0, Invalid, TCPSynSent},
		}, false},
		{"reply ACK in SYN_SENT is ignored", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, ack, 0, Hit, TCPSynSent},
		}, false},
		{"server SYN after SYN-ACK is invalid", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn | ack, 0, Hit, TCPSynRecv},
			{r, syn, 0, Invalid, TCPSynRecv},
		}, false},
		{"late SYN-ACK and SYN in ESTABLISHED are ignored", seq(handshake, []step{
			{r, syn | ack, 0, Hit, TCPEstablished},
			{o, syn, 0, Hit, TCPEstablished},
		}), true},
		{"segment without flags is invalid", seq(handshake, []step{{o, 0, 0, Invalid, TCPEstablished}}), true},
		{"server SYN on CLOSE is invalid", seq(handshake, []step{
			{r, rst, 0, Hit, TCPClose},
			{r, syn, 0, Invalid, TCPClose},
		}), true},
		{"FIN and ACK in CLOSE stay", seq(handshake, []step{
			{r, rst, 0, Hit, TCPClose},
			{o, fin | ack, 0, Hit, TCPClose},
			{o, ack, 0, Hit, TCPClose},
		}), true},
	}
	nat := MakeKey(ProtoTCP, srv, ap("203.0.113.1:61000"))
	for _, mode := range []string{"plain", "nat"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				tab := newTable(t)
				f := newFlow(t, tab, tcpKey)
				if mode == "nat" {
					f.rep = nat
				}
				prev := TCPNone
				var res Result
				for n, s := range tc.steps {
					res = f.send(s.d, s.flags, s.data)
					if res.Status != s.status || res.State != s.state {
						t.Fatalf("step %d (%v %#x): %v %v, want %v %v", n, s.d, s.flags, res.Status, res.State, s.status, s.state)
					}
					if res.OldState != prev {
						t.Errorf("step %d: old state %v, want %v", n, res.OldState, prev)
					}
					checkKeys(t, res, f.key, f.rep, s.d)
					if ref, d, ok := tab.Lookup(f.wire(s.d), f.now); !ok || d != s.d || ref != res.Ref {
						t.Errorf("step %d: Lookup(%v) = %v %v %v", n, f.wire(s.d), ref, d, ok)
					}
					prev = res.State
				}
				if res.Assured != tc.assured {
					t.Errorf("assured %v, want %v", res.Assured, tc.assured)
				}
				if mode == "nat" {
					// The untranslated reverse tuple belongs to no one.
					if _, _, ok := tab.Lookup(f.key.Reply(), f.now); ok {
						t.Errorf("Lookup(%v) found the NATed entry", f.key.Reply())
					}
				}
			})
		}
	}
}

func TestTCPInvalidChangesNothing(t *testing.T) {
	tab := newTable(t)
	f := newFlow(t, tab, tcpKey)
	f.handshake()
	before := tab.Stats().Invalid
	ref := f.send(o, psh|ack, 10).Ref
	e0, _ := tab.Get(ref)
	f.now = f.now.Add(time.Second)
	res := f.send(o, 0, 0)
	if res.Status != Invalid || res.Refreshed {
		t.Fatalf("got %+v", res)
	}
	e1, _ := tab.Get(ref)
	if e0 != e1 {
		t.Errorf("entry changed:\n%+v\n%+v", e0, e1)
	}
	if got := tab.Stats().Invalid; got != before+1 {
		t.Errorf("Invalid counter %d, want %d", got, before+1)
	}
}

func TestTCPIgnoredDoesNotRefresh(t *testing.T) {
	tab := newTable(t)
	f := newFlow(t, tab, tcpKey)
	f.send(o, syn, 0)
	f.now = at(10 * time.Second)
	if res := f.send(o, syn, 0); res.Refreshed {
		t.Error("retransmitted SYN restarted the timer")
	}
	f.handshake2()
	f.now = at(20 * time.Second)
	if res := f.send(r, syn|ack, 0); res.Status != Hit || res.Refreshed {
		t.Errorf("late SYN-ACK: %+v", res)
	}
}

// handshake2 completes a handshake whose SYN was already sent.
func (f *flow) handshake2() {
	f.tb.Helper()
	if res := f.send(r, syn|ack, 0); res.State != TCPSynRecv {
		f.tb.Fatalf("SYN-ACK: %v", res.State)
	}
	if res := f.send(o, ack, 0); res.State != TCPEstablished {
		f.tb.Fatalf("ACK: %v", res.State)
	}
}

func TestTCPSeqTracking(t *testing.T) {
	tab := newTable(t)
	f := newFlow(t, tab, tcpKey)
	f.handshake()
	f.send(o, psh|ack, 100)
	res := f.send(r, psh|ack, 300)
	f.send(o, ack, 0)
	e, ok := tab.Get(res.Ref)
	if !ok {
		t.Fatal("entry gone")
	}
	// Client ISN 1000: SYN (1) + 100 bytes; server ISN 5000: SYN + 300.
	want := Entry{NextSeq: [2]uint32{1101, 5301}, LastAck: [2]uint32{5301, 1101}, SeqKnown: [2]bool{true, true}, AckKnown: [2]bool{true, true}}
	if e.NextSeq != want.NextSeq || e.LastAck != want.LastAck || e.SeqKnown != want.SeqKnown || e.AckKnown != want.AckKnown {
		t.Errorf("seq state %v %v %v %v, want %v %v", e.NextSeq, e.LastAck, e.SeqKnown, e.AckKnown, want.NextSeq, want.LastAck)
	}
	if e.Window != [2]uint16{1000, 1000} {
		t.Errorf("window %v", e.Window)
	}
	for d, w := range []uint32{5301, 1101} {
		if got, ok := e.RcvNxt(Dir(d)); !ok || got != w {
			t.Errorf("RcvNxt(%v) = %d %v, want %d", Dir(d), got, ok, w)
		}
	}
	if e.Packets != [2]uint64{4, 2} || e.Bytes != [2]uint64{40*4 + 100, 40*2 + 300} {
		t.Errorf("counters %v %v", e.Packets, e.Bytes)
	}
}

func TestTCPRSTWindow(t *testing.T) {
	// After the exchange below the server's last ack is 1101 with window
	// 1000 and the client's is 5001 with window 1000. Linux's
	// nf_conntrack_tcp_packet (TCP_CONNTRACK_CLOSE) and tcp_in_window: an RST
	// below the receiver's ack is invalid; exactly at it, it closes; inside
	// the window it keeps ESTABLISHED for the receiver's challenge ACK (RFC
	// 5961 3.2); past the window by less than a window it is ignored, further
	// out invalid.
	setup := func(t *testing.T) *flow {
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		f.handshake()
		f.send(o, psh|ack, 100)
		f.send(r, ack, 0)
		return f
	}
	cases := []struct {
		name   string
		d      Dir
		seq    uint32
		status Status
		state  TCPState
	}{
		{"client at rcv.nxt", o, 1101, Hit, TCPClose},
		{"client inside window", o, 1500, Hit, TCPEstablished},
		{"client at window edge", o, 2101, Hit, TCPEstablished},
		{"client past window by less than a window", o, 2102, Hit, TCPEstablished},
		{"client past window by more", o, 3102, Invalid, TCPEstablished},
		{"client before rcv.nxt", o, 1100, Invalid, TCPEstablished},
		{"client far away", o, 0x80001101, Invalid, TCPEstablished},
		{"server at rcv.nxt", r, 5001, Hit, TCPClose},
		{"server at window edge", r, 6001, Hit, TCPEstablished},
		{"server past window by more", r, 7002, Invalid, TCPEstablished},
		{"server before rcv.nxt", r, 5000, Invalid, TCPEstablished},
	}
	for _, tc := range cases {
		for _, flags := range []uint8{rst, rst | ack} {
			t.Run(tc.name+"/"+map[uint8]string{rst: "RST", rst | ack: "RST-ACK"}[flags], func(t *testing.T) {
				f := setup(t)
				ackNo := uint32(0)
				if flags&ack != 0 {
					ackNo = f.nxt[1-tc.d]
				}
				res := f.tab.Track(tcp4(f.wire(tc.d), flags, tc.seq, ackNo), f.now)
				if res.Status != tc.status || res.State != tc.state {
					t.Fatalf("%v %v, want %v %v", res.Status, res.State, tc.status, tc.state)
				}
				checkKeys(t, res, f.key, f.rep, tc.d)
				// An RST that does not close leaves the flow working both ways.
				if tc.state != TCPClose {
					for _, d := range []Dir{o, r} {
						if res := f.send(d, ack, 0); res.Status != Hit || res.State != TCPEstablished {
							t.Errorf("after the RST, %v ACK: %v %v", d, res.Status, res.State)
						}
					}
				}
			})
		}
	}
	t.Run("inexact RST takes CLOSE's timeout, the challenge ACK the unacknowledged one", func(t *testing.T) {
		// The RST moves the client's end to its seq (tcp_in_window takes it as
		// sent), which the server never acknowledges: Linux then counts data
		// as unacknowledged and caps ESTABLISHED at timeout_unacknowledged.
		f := setup(t)
		to := DefaultTimeouts()
		res := f.tab.Track(tcp4(f.key, rst, 1500, 0), f.now)
		e, _ := f.tab.Get(res.Ref)
		if e.State != TCPEstablished || e.Timeout != to.TCP[TCPClose] {
			t.Fatalf("after the RST: %v timeout %v", e.State, e.Timeout)
		}
		f.send(r, ack, 0) // the server's challenge ACK
		e, _ = f.tab.Get(res.Ref)
		if e.State != TCPEstablished || e.Timeout != to.TCPUnacknowledged || !e.Unacked[Original] {
			t.Fatalf("after the challenge ACK: %v timeout %v", e.State, e.Timeout)
		}
	})
	t.Run("RST right after the sender's data closes", func(t *testing.T) {
		f := setup(t)
		f.send(o, psh|ack, 500) // in flight, not yet acknowledged
		if res := f.tab.Track(tcp4(f.key, rst|ack, 1601, 5001), f.now); res.Status != Hit || res.State != TCPClose {
			t.Errorf("RST at snd.nxt after data: %v %v", res.Status, res.State)
		}
	})
	t.Run("the window is scaled", func(t *testing.T) {
		// Both SYNs carry window scale 7: the server's window field 1000
		// means 128000 bytes, so an RST 60000 bytes past its ack is inside.
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		p := f.pkt(o, syn, 0)
		p.HasWScale, p.WScale = true, 7
		f.opened = true
		tab.Create(p, f.now, f.rep, false)
		f.advance(o, p)
		p = f.pkt(r, syn|ack, 0)
		p.HasWScale, p.WScale = true, 7
		tab.Track(p, f.now)
		f.advance(r, p)
		f.send(o, ack, 0)
		res := f.send(r, ack, 0)
		if e, _ := tab.Get(res.Ref); e.WindowScale != [2]uint8{7, 7} {
			t.Fatalf("window scale %v", e.WindowScale)
		}
		if res := tab.Track(tcp4(f.key, rst, 1001+60000, 0), f.now); res.Status != Hit || res.State != TCPEstablished {
			t.Errorf("RST inside the scaled window: %v %v", res.Status, res.State)
		}
		if res := tab.Track(tcp4(f.key, rst, 1001+300000, 0), f.now); res.Status != Invalid {
			t.Errorf("RST past the scaled window: %v", res.Status)
		}
	})
	t.Run("scaling needs both SYNs", func(t *testing.T) {
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		p := f.pkt(o, syn, 0)
		p.HasWScale, p.WScale = true, 7
		f.opened = true
		tab.Create(p, f.now, f.rep, false)
		f.advance(o, p)
		f.send(r, syn|ack, 0)
		res := f.send(o, ack, 0)
		if e, _ := tab.Get(res.Ref); e.WindowScale != [2]uint8{0, 0} {
			t.Fatalf("window scale %v, want none: the SYN-ACK had no option", e.WindowScale)
		}
	})
	t.Run("SYN_SENT: the RST's ACK must cover no more than the SYN", func(t *testing.T) {
		// The reply direction's first segment starts its tracking, so its
		// seq is never out of window; its ACK is checked (tcp_in_window III,
		// after Linux's adjustment for an ACK one past, a keepalive's answer).
		for _, tc := range []struct {
			flags uint8
			seq   uint32
			ack   uint32
			want  Status
		}{
			{rst | ack, 0, 1001, Hit},
			{rst | ack, 0, 1002, Hit},
			{rst | ack, 0, 1003, Invalid},
			{rst, 0, 0, Hit},
			{rst, 12345, 0, Hit},
		} {
			tab := newTable(t)
			f := newFlow(t, tab, tcpKey)
			f.send(o, syn, 0)
			res := tab.Track(tcp4(f.rep, tc.flags, tc.seq, tc.ack), f.now)
			if res.Status != tc.want {
				t.Errorf("flags %#x seq %d ack %d: %v, want %v", tc.flags, tc.seq, tc.ack, res.Status, tc.want)
			}
		}
	})
}

// TestRSTOnlyReply: an RST before any reply deletes the entry at once (Linux
// nf_conntrack_tcp_packet: "If only reply is a RST ... delete the conntrack
// immediately"), reason closed, so that it neither lingers in CLOSE nor counts
// against a limit; once a reply was seen, an RST leaves the entry in CLOSE.
func TestRSTOnlyReply(t *testing.T) {
	cases := []struct {
		name   string
		pickup bool
		steps  []step
		gone   bool
	}{
		{"RST answers the SYN", false, []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, rst | ack, 0, Hit, TCPClose},
		}, true},
		{"the client aborts its SYN", false, []step{
			{o, syn, 0, Created, TCPSynSent},
			{o, rst, 0, Hit, TCPClose},
		}, true},
		{"RST answers a picked-up segment", true, []step{
			{o, psh | ack, 10, Created, TCPEstablished},
			{r, rst, 0, Hit, TCPClose},
		}, true},
		{"RST after the SYN-ACK", false, []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn | ack, 0, Hit, TCPSynRecv},
			{o, rst, 0, Hit, TCPClose},
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t)
			f := newFlow(t, tab, tcpKey)
			f.pickup = tc.pickup
			var res Result
			for n, s := range tc.steps {
				res = f.send(s.d, s.flags, s.data)
				if res.Status != s.status || res.State != s.state {
					t.Fatalf("step %d: %v %v, want %v %v", n, res.Status, res.State, s.status, s.state)
				}
			}
			checkKeys(t, res, f.key, f.rep, tc.steps[len(tc.steps)-1].d)
			_, _, found := tab.Lookup(f.key, f.now)
			if found == tc.gone {
				t.Fatalf("entry found %v after the RST, want %v", found, !tc.gone)
			}
			if !tc.gone {
				return
			}
			if r := tab.destroyed.reasons; len(r) != 1 || r[0] != ReasonClosed {
				t.Errorf("destroyed %v, want [closed]", r)
			}
			if e := tab.destroyed.entries[0]; e.State != TCPClose || e.Packets[Original]+e.Packets[Reply] != uint64(len(tc.steps)) {
				t.Errorf("last snapshot %v packets %v", e.State, e.Packets)
			}
			if tab.Len() != 0 {
				t.Error("entry still held")
			}
		})
	}
}

func TestTCPPickup(t *testing.T) {
	cases := []struct {
		name   string
		flags  uint8
		pickup bool
		want   Status
		state  TCPState
	}{
		{"ACK with pickup", ack, true, Created, TCPEstablished},
		{"data with pickup", psh | ack, true, Created, TCPEstablished},
		{"ACK without pickup", ack, false, Invalid, TCPNone},
		{"FIN with pickup", fin | ack, true, Invalid, TCPNone},
		{"RST with pickup", rst | ack, true, Invalid, TCPNone},
		{"SYN-ACK with pickup", syn | ack, true, Invalid, TCPNone},
		{"SYN without pickup", syn, false, Created, TCPSynSent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t)
			res := tab.Create(tcp4(tcpKey, tc.flags, 1000, 5000), t0, tcpKey.Reply(), tc.pickup)
			if res.Status != tc.want || res.State != tc.state {
				t.Fatalf("%v %v, want %v %v", res.Status, res.State, tc.want, tc.state)
			}
			if tc.want != Created {
				if tab.Len() != 0 {
					t.Error("invalid packet created an entry")
				}
				return
			}
			checkKeys(t, res, tcpKey, tcpKey.Reply(), o)
		})
	}
	t.Run("assured after the answer", func(t *testing.T) {
		// Linux marks IPS_SEEN_REPLY after the answer's own tracking, so the
		// answer still counts as unreplied; the segment after it assures.
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		f.pickup = true
		if res := f.send(o, psh|ack, 10); res.Status != Created || res.Assured {
			t.Fatalf("%+v", res)
		}
		if res := f.send(o, psh|ack, 10); res.Assured {
			t.Fatal("assured without an answer")
		}
		res := f.send(r, ack, 0)
		if res.Assured || !res.Replied || res.State != TCPEstablished || !res.Updated {
			t.Fatalf("answer: %+v", res)
		}
		checkKeys(t, res, tcpKey, tcpKey.Reply(), r)
		if res := f.send(o, ack, 0); !res.Assured || !res.Updated {
			t.Fatalf("after the answer: %+v", res)
		}
	})
	t.Run("no ESTABLISHED timeout before the answer", func(t *testing.T) {
		// nf_conntrack_tcp_packet: "ESTABLISHED without SEEN_REPLY, i.e.
		// mid-connection pickup with loose=1. Avoid large ESTABLISHED timeout."
		to := DefaultTimeouts()
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		f.pickup = true
		res := f.send(o, ack, 0)
		e, _ := tab.Get(res.Ref)
		if e.Timeout != to.TCPUnacknowledged {
			t.Fatalf("picked up: timeout %v, want unacknowledged %v", e.Timeout, to.TCPUnacknowledged)
		}
		f.send(r, ack, 0) // the answer itself is still unreplied
		if e, _ = tab.Get(res.Ref); e.Timeout != to.TCPUnacknowledged {
			t.Fatalf("answer: timeout %v", e.Timeout)
		}
		f.send(o, ack, 0)
		if e, _ = tab.Get(res.Ref); e.Timeout != to.TCP[TCPEstablished] {
			t.Fatalf("after the answer: timeout %v", e.Timeout)
		}
	})
}

func TestTCPTeardownExpiry(t *testing.T) {
	to := DefaultTimeouts()
	cases := []struct {
		name   string
		steps  []step
		reason Reason
		wait   time.Duration
	}{
		{"TIME_WAIT after FINs", seq(handshake, []step{
			{o, fin | ack, 0, Hit, TCPFinWait},
			{r, fin | ack, 0, Hit, TCPLastAck},
			{o, ack, 0, Hit, TCPTimeWait},
		}), ReasonClosed, to.TCP[TCPTimeWait]},
		{"TIME_WAIT after FINs, server first", seq(handshake, []step{
			{r, fin | ack, 0, Hit, TCPFinWait},
			{o, ack, 0, Hit, TCPCloseWait},
			{o, fin | ack, 0, Hit, TCPLastAck},
			{r, ack, 0, Hit, TCPTimeWait},
		}), ReasonClosed, to.TCP[TCPTimeWait]},
		{"CLOSE after RST", seq(handshake, []step{{r, rst, 0, Hit, TCPClose}}), ReasonClosed, to.TCP[TCPClose]},
		{"ESTABLISHED idle", handshake, ReasonExpired, to.TCP[TCPEstablished]},
		{"LAST_ACK idle", seq(handshake, []step{
			{o, fin | ack, 0, Hit, TCPFinWait},
			{r, fin | ack, 0, Hit, TCPLastAck},
		}), ReasonExpired, to.TCP[TCPLastAck]},
		{"SYN_SENT unanswered", []step{{o, syn, 0, Created, TCPSynSent}}, ReasonExpired, to.TCP[TCPSynSent]},
		{"SYN_SENT2 idle", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, syn, 0, Hit, TCPSynSent2},
		}, ReasonExpired, to.TCP[TCPSynSent2]},
		{"SYN_RECV idle", handshake[:2], ReasonExpired, to.TCP[TCPSynRecv]},
		{"FIN_WAIT idle", seq(handshake, []step{{o, fin | ack, 0, Hit, TCPFinWait}}), ReasonExpired, to.TCP[TCPFinWait]},
		{"CLOSE_WAIT idle", seq(handshake, []step{
			{o, fin | ack, 0, Hit, TCPFinWait},
			{r, ack, 0, Hit, TCPCloseWait},
		}), ReasonExpired, to.TCP[TCPCloseWait]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t)
			got := &tab.destroyed
			f := newFlow(t, tab, tcpKey)
			for _, s := range tc.steps {
				f.now = f.now.Add(time.Second)
				if res := f.send(s.d, s.flags, s.data); res.State != s.state {
					t.Fatalf("%v %#x: %v, want %v", s.d, s.flags, res.State, s.state)
				}
			}
			last := f.now
			for _, d := range []Dir{o, r} {
				if _, _, ok := tab.Lookup(f.wire(d), last.Add(tc.wait-1)); !ok {
					t.Fatalf("%v gone 1ns before the deadline", d)
				}
			}
			if res := f.tab.Track(f.pkt(r, ack, 0), last.Add(tc.wait)); res.Status != Miss {
				t.Fatalf("at the deadline: %v, want miss", res.Status)
			}
			if res := f.tab.Track(f.pkt(o, ack, 0), last.Add(tc.wait+time.Second)); res.Status != Miss {
				t.Fatalf("after the deadline: %v, want miss", res.Status)
			}
			if len(got.reasons) != 1 || got.reasons[0] != tc.reason {
				t.Fatalf("destroyed %v, want [%v]", got.reasons, tc.reason)
			}
			if e := got.entries[0]; e.Orig != f.key || e.Reply != f.rep {
				t.Errorf("OnDestroy entry %v / %v", e.Orig, e.Reply)
			}
			if s := tab.Stats(); s.Destroyed[tc.reason] != 1 || s.Entries != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestKeepalive(t *testing.T) {
	setup := func(t *testing.T, rule Refresh) *flow {
		tab := newTable(t, func(c *Config) { c.Refresh = rule })
		f := newFlow(t, tab, tcpKey)
		f.handshake()
		f.send(o, psh|ack, 100)
		f.send(r, ack, 0)
		return f
	}
	// probe is a keepalive probe from d: seq one before d's next.
	probe := func(f *flow, d Dir, n int) *Packet {
		p := f.pkt(d, ack, n)
		p.Seq--
		return p
	}
	t.Run("probe and answer", func(t *testing.T) {
		for _, n := range []int{0, 1} {
			f := setup(t, RefreshAny)
			res := f.tab.Track(probe(f, o, n), f.now)
			if !res.Keepalive || res.KeepaliveAck {
				t.Fatalf("%d-byte probe: %+v", n, res)
			}
			res = f.tab.Track(f.pkt(r, ack, 0), f.now)
			if res.Keepalive || !res.KeepaliveAck {
				t.Fatalf("answer: %+v", res)
			}
			// A second ACK is an ordinary duplicate ACK.
			if res = f.tab.Track(f.pkt(r, ack, 0), f.now); res.KeepaliveAck {
				t.Fatal("duplicate ACK taken for a keepalive answer")
			}
			if got := f.tab.Stats().KeepaliveProbes; got != 1 {
				t.Errorf("KeepaliveProbes %d", got)
			}
			e, _ := f.tab.Get(res.Ref)
			if e.NextSeq[o] != 1101 {
				t.Errorf("probe moved NextSeq to %d", e.NextSeq[o])
			}
		}
	})
	t.Run("server probes", func(t *testing.T) {
		f := setup(t, RefreshAny)
		if res := f.tab.Track(probe(f, r, 0), f.now); !res.Keepalive || res.Dir != r {
			t.Fatalf("%+v", res)
		}
		if res := f.tab.Track(f.pkt(o, ack, 0), f.now); !res.KeepaliveAck || res.Dir != o {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("not probes", func(t *testing.T) {
		cases := []struct {
			name string
			pkt  func(f *flow) *Packet
		}{
			{"pure ACK at snd.nxt", func(f *flow) *Packet { return f.pkt(o, ack, 0) }},
			{"two bytes", func(f *flow) *Packet { return probe(f, o, 2) }},
			{"PSH set", func(f *flow) *Packet { p := probe(f, o, 1); p.TCPFlags |= psh; return p }},
			{"seq two before", func(f *flow) *Packet { p := probe(f, o, 0); p.Seq--; return p }},
			{"unacknowledged 1-byte retransmission", func(f *flow) *Packet {
				f.send(o, psh|ack, 1) // not acknowledged by the server
				return probe(f, o, 1)
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f := setup(t, RefreshAny)
				if res := f.tab.Track(tc.pkt(f), f.now); res.Keepalive {
					t.Errorf("taken for a probe: %+v", res)
				}
			})
		}
	})
}

// TestTCPReopen: a SYN on a TIME_WAIT or CLOSE entry ends it (closed) and
// reports Miss when Linux would reopen (a FIN was seen, or the SYN's side sent
// the RST); Create then makes the new connection's entry, whose original
// direction is the SYN's.
func TestTCPReopen(t *testing.T) {
	timeWait := seq(handshake, []step{
		{o, fin | ack, 0, Hit, TCPFinWait},
		{r, fin | ack, 0, Hit, TCPLastAck},
		{o, ack, 0, Hit, TCPTimeWait},
	})
	// The client resets: its own new SYN replaces the entry (Linux: last_dir ==
	// dir && last_index == TCP_RST_SET).
	closed := seq(handshake, []step{{o, rst | ack, 0, Hit, TCPClose}})
	// A FIN was seen (IP_CT_TCP_FLAG_CLOSE_INIT), then the server reset.
	finThenRST := seq(handshake, []step{{o, fin | ack, 0, Hit, TCPFinWait}, {r, rst, 0, Hit, TCPClose}})
	cases := []struct {
		name   string
		steps  []step
		d      Dir  // side of the new SYN
		create bool // Create directly instead of Track then Create
	}{
		{"client SYN on TIME_WAIT", timeWait, o, false},
		{"server SYN on TIME_WAIT", timeWait, r, false},
		{"client SYN on CLOSE", closed, o, false},
		{"client SYN on CLOSE after a FIN", finThenRST, o, false},
		{"Create on TIME_WAIT", timeWait, o, true},
		{"Create on CLOSE", closed, o, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := newTable(t)
			d := &tab.destroyed
			f := newFlow(t, tab, tcpKey)
			for _, s := range tc.steps {
				if res := f.send(s.d, s.flags, s.data); res.State != s.state {
					t.Fatalf("%v", res.State)
				}
			}
			p := tcp4(f.wire(tc.d), syn, 777, 0)
			if !tc.create {
				if res := tab.Track(p, f.now); res.Status != Miss {
					t.Fatalf("Track: %v", res.Status)
				}
			}
			res := tab.Create(p, f.now, p.Key.Reply(), false)
			if res.Status != Created || res.State != TCPSynSent {
				t.Fatalf("Create: %+v", res)
			}
			checkKeys(t, res, p.Key, p.Key.Reply(), o)
			if len(d.reasons) != 1 || d.reasons[0] != ReasonClosed {
				t.Fatalf("destroyed %v", d.reasons)
			}
			if res := tab.Track(tcp4(p.Key.Reply(), syn|ack, 9000, 778), f.now); res.Status != Hit || res.State != TCPSynRecv || res.Dir != r {
				t.Fatalf("SYN-ACK: %+v", res)
			}
			if s := tab.Stats(); s.Created != 2 || s.Entries != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestTCPResyncAfterIgnoredSYN: after the server reset an ESTABLISHED
// connection, the client's SYN on the same tuple is ignored (neither side
// started a close, and the RST was not the client's), and the server's SYN-ACK
// that acknowledges it takes the new connection up in SYN_RECV, as Linux's
// nf_conntrack_tcp_packet does (case b of its ignored packets).
func TestTCPResyncAfterIgnoredSYN(t *testing.T) {
	tab := newTable(t)
	f := newFlow(t, tab, tcpKey)
	f.handshake()
	f.send(r, rst, 0)
	p := tcp4(f.key, syn, 777, 0)
	p.HasWScale, p.WScale = true, 3
	res := tab.Track(p, f.now)
	if res.Status != Hit || res.State != TCPClose || res.Refreshed {
		t.Fatalf("SYN on CLOSE: %+v", res)
	}
	sa := tcp4(f.rep, syn|ack, 9000, 778)
	sa.HasWScale, sa.WScale = true, 5
	res = tab.Track(sa, f.now)
	if res.Status != Hit || res.OldState != TCPClose || res.State != TCPSynRecv || !res.Updated {
		t.Fatalf("SYN-ACK: %+v", res)
	}
	if res := tab.Track(tcp4(f.key, ack, 778, 9001), f.now); res.State != TCPEstablished {
		t.Fatalf("ACK: %+v", res)
	}
	e, _ := tab.Get(res.Ref)
	if e.NextSeq != [2]uint32{778, 9001} || e.WindowScale != [2]uint8{3, 5} {
		t.Errorf("resynchronised tracking: next %v scale %v", e.NextSeq, e.WindowScale)
	}
	if s := tab.Stats(); s.Created != 1 {
		t.Errorf("created %d entries, want the one", s.Created)
	}
}

// TestTCPInvalidFlags: flag combinations Linux's tcp_error refuses (its
// tcp_valid_flags) never open an entry, and never change one.
func TestTCPInvalidFlags(t *testing.T) {
	bad := []uint8{syn | fin, syn | rst, syn | fin | ack, 0, fin, fin | psh, rst | fin, psh, syn | ack | flagURG, rst | ack | flagURG}
	good := []uint8{syn, syn | flagURG, syn | ack, rst, rst | ack, fin | ack, fin | ack | flagURG, ack, ack | flagURG, psh | ack, syn | flagECE | flagCWR, rst | psh}
	for _, f := range bad {
		if ValidFlags(f) {
			t.Errorf("ValidFlags(%#x) = true", f)
		}
		if CanOpen(f, true) {
			t.Errorf("CanOpen(%#x) = true", f)
		}
		tab := newTable(t)
		if res := tab.Create(tcp4(tcpKey, f, 1000, 0), t0, tcpKey.Reply(), true); res.Status != Invalid || tab.Len() != 0 {
			t.Errorf("Create(%#x): %v, %d entries", f, res.Status, tab.Len())
		}
		fl := newFlow(t, tab, tcpKey)
		fl.handshake()
		before, _ := tab.Get(fl.send(o, ack, 0).Ref)
		if res := tab.Track(tcp4(tcpKey, f, 1001, 5001), t0.Add(time.Second)); res.Status != Invalid || res.Refreshed {
			t.Errorf("Track(%#x): %+v", f, res)
		}
		if after, _ := tab.Get(fl.send(o, ack, 0).Ref); after.State != before.State {
			t.Errorf("%#x changed the state to %v", f, after.State)
		}
	}
	for _, f := range good {
		if !ValidFlags(f) {
			t.Errorf("ValidFlags(%#x) = false", f)
		}
	}
}

// TestFastPathSameAsSlow: tcpEstablishedLocked does exactly what the general path
// does for the segments it takes. Random traffic on a few flows (data both ways,
// retransmissions, keepalives and their answers, window changes, now and then a FIN
// or an RST) goes through two tables, one with the fast path off; every result and
// every entry must be the same.
func TestFastPathSameAsSlow(t *testing.T) {
	defer func() { fastPath = true }()
	rng := rand.New(rand.NewPCG(1, 2))
	fast, slow := newTable(t), newTable(t)
	type flowState struct {
		key Key
		nxt [2]uint32
	}
	var flows []*flowState
	for n := range 8 {
		flows = append(flows, &flowState{key: nthKey(ProtoTCP, n), nxt: [2]uint32{rng.Uint32(), rng.Uint32()}})
	}
	now := t0
	both := func(p *Packet, create bool) {
		t.Helper()
		q := *p
		var a, b Result
		fastPath = true
		if create {
			a = fast.Create(p, now, p.Key.Reply(), false)
		} else {
			a = fast.Track(p, now)
		}
		fastPath = false
		if create {
			b = slow.Create(&q, now, q.Key.Reply(), false)
		} else {
			b = slow.Track(&q, now)
		}
		if a != b {
			t.Fatalf("%+v:\n fast %+v\n slow %+v", *p, a, b)
		}
		if a.Status == Hit || a.Status == Created {
			ea, _ := fast.Get(a.Ref)
			eb, _ := slow.Get(b.Ref)
			if ea != eb {
				t.Fatalf("%+v:\n fast %+v\n slow %+v", *p, ea, eb)
			}
		}
	}
	seg := func(f *flowState, d Dir, flags uint8, seq, ack uint32, n int, win uint16) *Packet {
		k := f.key
		if d == Reply {
			k = k.Reply()
		}
		return &Packet{Key: k, Len: 40 + n, TCPFlags: flags, Seq: seq, Ack: ack, Window: win, PayloadLen: n, Inside: d == Original}
	}
	for _, f := range flows {
		both(seg(f, Original, syn, f.nxt[0], 0, 0, 64240), true)
		f.nxt[0]++
		both(seg(f, Reply, syn|ack, f.nxt[1], f.nxt[0], 0, 65160), false)
		f.nxt[1]++
		both(seg(f, Original, ack, f.nxt[0], f.nxt[1], 0, 502), false)
	}
	for range 20000 {
		now = now.Add(time.Duration(rng.IntN(200)) * time.Millisecond)
		f := flows[rng.IntN(len(flows))]
		d := Dir(rng.IntN(2))
		win := uint16(502 + rng.IntN(3)*1000)
		if rng.IntN(20) == 0 {
			win = 0
		}
		switch x := rng.IntN(100); {
		case x < 50: // data
			n := 1 + rng.IntN(1400)
			both(seg(f, d, psh|ack, f.nxt[d], f.nxt[1-d], n, win), false)
			f.nxt[d] += uint32(n)
		case x < 65: // a bare ACK, maybe of less than all
			back := uint32(rng.IntN(2)) * uint32(rng.IntN(500))
			both(seg(f, d, ack, f.nxt[d], f.nxt[1-d]-back, 0, win), false)
		case x < 80: // a retransmission of the last 100 bytes
			both(seg(f, d, psh|ack, f.nxt[d]-100, f.nxt[1-d], 100, win), false)
		case x < 92: // a keepalive probe and its answer
			both(seg(f, d, ack, f.nxt[d]-1, f.nxt[1-d], 0, win), false)
			both(seg(f, 1-d, ack, f.nxt[1-d], f.nxt[d], 0, win), false)
		case x < 96: // URG, ECE: flags the fast path leaves to the general one
			both(seg(f, d, ack|flagURG|flagECE, f.nxt[d], f.nxt[1-d], 0, win), false)
		case x < 98: // a FIN, closing that flow for good
			both(seg(f, d, fin|ack, f.nxt[d], f.nxt[1-d], 0, win), false)
			f.nxt[d]++
		default: // an RST, exact or not
			both(seg(f, d, rst, f.nxt[d]+uint32(rng.IntN(2))*777, 0, 0, 0), false)
		}
	}
}
