package conntrack

import (
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
		{"RST answers SYN", []step{
			{o, syn, 0, Created, TCPSynSent},
			{r, rst | ack, 0, Hit, TCPClose},
		}, false},
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
	// 1000 and the client's is 5001 with window 1000.
	setup := func(t *testing.T) *flow {
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		f.handshake()
		f.send(o, psh|ack, 100)
		f.send(r, ack, 0)
		return f
	}
	cases := []struct {
		name  string
		d     Dir
		seq   uint32
		valid bool
	}{
		{"client at rcv.nxt", o, 1101, true},
		{"client inside window", o, 1500, true},
		{"client at window edge", o, 2101, true},
		{"client past window", o, 2102, false},
		{"client before rcv.nxt", o, 1100, false},
		{"client far away", o, 0x80001101, false},
		{"server at rcv.nxt", r, 5001, true},
		{"server at window edge", r, 6001, true},
		{"server past window", r, 6002, false},
		{"server before rcv.nxt", r, 5000, false},
	}
	for _, tc := range cases {
		for _, flags := range []uint8{rst, rst | ack} {
			t.Run(tc.name+"/"+map[uint8]string{rst: "RST", rst | ack: "RST-ACK"}[flags], func(t *testing.T) {
				f := setup(t)
				res := f.tab.Track(tcp4(f.wire(tc.d), flags, tc.seq, 0), f.now)
				want, state := Invalid, TCPEstablished
				if tc.valid {
					want, state = Hit, TCPClose
				}
				if res.Status != want || res.State != state {
					t.Fatalf("%v %v, want %v %v", res.Status, res.State, want, state)
				}
				checkKeys(t, res, f.key, f.rep, tc.d)
				// An invalid RST leaves the flow working both ways.
				if !tc.valid {
					for _, d := range []Dir{o, r} {
						if res := f.send(d, ack, 0); res.Status != Hit || res.State != TCPEstablished {
							t.Errorf("after invalid RST, %v ACK: %v %v", d, res.Status, res.State)
						}
					}
				}
			})
		}
	}
	t.Run("window stretched to unacknowledged data", func(t *testing.T) {
		f := setup(t)
		for range 5 {
			f.send(o, psh|ack, 1000)
		}
		// Sent up to 6101, acknowledged 1101, window 1000.
		if res := f.tab.Track(tcp4(f.key, rst, 6101, 0), f.now); res.Status != Hit {
			t.Errorf("RST at snd.nxt: %v", res.Status)
		}
	})
	t.Run("SYN_SENT needs the SYN acknowledged", func(t *testing.T) {
		for _, tc := range []struct {
			flags uint8
			ack   uint32
			want  Status
		}{{rst | ack, 1001, Hit}, {rst | ack, 1002, Invalid}, {rst, 0, Invalid}} {
			tab := newTable(t)
			f := newFlow(t, tab, tcpKey)
			f.send(o, syn, 0)
			if res := tab.Track(tcp4(f.rep, tc.flags, 0, tc.ack), f.now); res.Status != tc.want {
				t.Errorf("flags %#x ack %d: %v, want %v", tc.flags, tc.ack, res.Status, tc.want)
			}
		}
	})
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
	t.Run("assured on the answer", func(t *testing.T) {
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
		if !res.Assured || res.State != TCPEstablished {
			t.Fatalf("answer: %+v", res)
		}
		checkKeys(t, res, tcpKey, tcpKey.Reply(), r)
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
// reports Miss; Create then makes the new connection's entry, whose
// original direction is the SYN's.
func TestTCPReopen(t *testing.T) {
	timeWait := seq(handshake, []step{
		{o, fin | ack, 0, Hit, TCPFinWait},
		{r, fin | ack, 0, Hit, TCPLastAck},
		{o, ack, 0, Hit, TCPTimeWait},
	})
	closed := seq(handshake, []step{{r, rst, 0, Hit, TCPClose}})
	cases := []struct {
		name   string
		steps  []step
		d      Dir  // side of the new SYN
		create bool // Create directly instead of Track then Create
	}{
		{"client SYN on TIME_WAIT", timeWait, o, false},
		{"server SYN on TIME_WAIT", timeWait, r, false},
		{"client SYN on CLOSE", closed, o, false},
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
