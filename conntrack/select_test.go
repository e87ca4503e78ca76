package conntrack

import (
	"slices"
	"testing"
	"time"
)

// TestSelectDestroy: Select picks live entries by a predicate (or every entry
// held), and Destroy ends them with the reason given, reports them, and skips
// handles whose entry is already gone.
func TestSelectDestroy(t *testing.T) {
	tab := newTable(t)
	for i := range 10 {
		k := nthKey(ProtoUDP, i)
		tab.Create(udp4(k, 1), at(time.Duration(i)*time.Second), k.Reply(), false)
	}
	// At 32 s flows 0..2 (created at 0..2 s, 30 s timeout) are due but not swept.
	now := at(32 * time.Second)
	even := func(e *EntryInfo) bool {
		if e.TimeLeft <= 0 {
			t.Errorf("%v offered with %v left", e.Orig, e.TimeLeft)
		}
		return e.Orig.SrcPort%2 == 0
	}
	refs := tab.Select(now, even)
	var ports []uint16
	for _, r := range refs {
		e, ok := tab.Get(r)
		if !ok {
			t.Fatal("a selected ref does not resolve")
		}
		ports = append(ports, e.Orig.SrcPort)
	}
	slices.Sort(ports)
	if want := []uint16{1028, 1030, 1032}; !slices.Equal(ports, want) {
		t.Fatalf("selected ports %v, want %v (the live even ones)", ports, want)
	}
	if all := tab.Select(now, nil); len(all) != 10 {
		t.Fatalf("Select(nil) = %d refs, want all 10 held", len(all))
	}

	collect(tab) // the NEWs
	if n := tab.Table.Destroy(refs, ReasonDeleted, now, &tab.gone); n != 3 {
		t.Fatalf("Destroy = %d, want 3", n)
	}
	tab.settle(Result{}, now)
	if got := tab.destroyed.reasons; !slices.Equal(got, []Reason{ReasonDeleted, ReasonDeleted, ReasonDeleted}) {
		t.Fatalf("reasons %v", got)
	}
	if evs := collect(tab); len(evs) != 3 || evs[0].Type != EventDestroy || evs[0].Reason != ReasonDeleted || !evs[0].Time.Equal(now) {
		t.Fatalf("events %v", evs)
	}
	// Their next packet finds nothing; the others are untouched.
	if res := tab.Track(udp4(nthKey(ProtoUDP, 4), 1), now); res.Status != Miss {
		t.Fatalf("deleted flow: %v", res.Status)
	}
	if res := tab.Track(udp4(nthKey(ProtoUDP, 5), 1), now); res.Status != Hit {
		t.Fatalf("kept flow: %v", res.Status)
	}
	// Stale handles are skipped, even once their slot holds a new entry.
	k := nthKey(ProtoUDP, 99)
	tab.Create(udp4(k, 1), now, k.Reply(), false)
	if n := tab.Table.Destroy(refs, ReasonDeleted, now, nil); n != 0 {
		t.Fatalf("stale refs destroyed %d", n)
	}
	if s := tab.Stats(); s.Destroyed[ReasonDeleted] != 3 || s.Entries != 8 {
		t.Fatalf("stats %+v", s)
	}
}

// TestSetTimeLeft: an entry given a remaining time expires then, 1 ns late
// never and 1 ns early never, through the idle-timeout path: reason expired
// (closed in TIME_WAIT), Idle at least Timeout, found at lookup and by Sweep.
func TestSetTimeLeft(t *testing.T) {
	established := func(t *testing.T) (*testTable, *flow) {
		tab := newTable(t)
		f := newFlow(t, tab, tcpKey)
		f.handshake()
		return tab, f
	}
	t.Run("shorten/sweep", func(t *testing.T) {
		tab, _ := established(t)
		now := at(10 * time.Second)
		tab.Sweep(now, 10) // the wheel has run past the entry's first bucket
		if n := tab.SetTimeLeft(tab.Select(now, nil), 2*time.Second, now); n != 1 {
			t.Fatalf("SetTimeLeft = %d", n)
		}
		if l := tab.List(now); len(l) != 1 || l[0].TimeLeft != 2*time.Second {
			t.Fatalf("List %+v", l)
		}
		if n := tab.Sweep(now.Add(2*time.Second-time.Nanosecond), 10); n != 0 {
			t.Fatal("swept 1ns early")
		}
		if n := tab.Sweep(now.Add(2*time.Second), 10); n != 1 {
			t.Fatal("not swept at the new deadline")
		}
		ev := collect(tab)
		d := ev[len(ev)-1]
		if d.Reason != ReasonExpired || d.Idle < d.Timeout || d.Timeout != DefaultTimeouts().TCP[TCPEstablished] {
			t.Fatalf("DESTROY %v: want expired with idle >= timeout", d)
		}
	})
	t.Run("zero/lookup", func(t *testing.T) {
		tab, f := established(t)
		now := at(time.Second)
		if n := tab.SetTimeLeft(tab.Select(now, nil), -time.Hour, now); n != 1 {
			t.Fatalf("SetTimeLeft = %d", n)
		}
		if res := tab.Track(f.pkt(o, psh|ack, 10), now); res.Status != Miss {
			t.Fatalf("due entry tracked: %v", res.Status)
		}
		if r := tab.destroyed.reasons; len(r) != 1 || r[0] != ReasonExpired {
			t.Fatalf("reasons %v", r)
		}
	})
	t.Run("time_wait closes", func(t *testing.T) {
		tab, f := established(t)
		f.send(o, fin|ack, 0)
		f.send(r, fin|ack, 0)
		f.send(o, ack, 0)
		now := at(time.Second)
		tab.SetTimeLeft(tab.Select(now, nil), 0, now)
		if n := tab.Sweep(now, 10); n != 1 || tab.destroyed.reasons[0] != ReasonClosed {
			t.Fatalf("swept %d, reasons %v", n, tab.destroyed.reasons)
		}
	})
	t.Run("extend, then a refresh restarts the timeout", func(t *testing.T) {
		tab := newTable(t)
		tab.Create(udp4(udpKey, 1), t0, udpKey.Reply(), false) // 30 s unreplied
		tab.SetTimeLeft(tab.Select(t0, nil), time.Minute, t0)
		if n := tab.Sweep(at(time.Minute-time.Nanosecond), 10); n != 0 {
			t.Fatal("extended entry swept early")
		}
		if res := tab.Track(udp4(udpKey, 1), at(50*time.Second)); res.Status != Hit || !res.Refreshed {
			t.Fatalf("refresh: %+v", res)
		}
		// Refreshed at 50 s: the 30 s timeout again, earlier than the extension.
		if n := tab.Sweep(at(80*time.Second-time.Nanosecond), 10); n != 0 {
			t.Fatal("swept early after the refresh")
		}
		if n := tab.Sweep(at(80*time.Second), 10); n != 1 {
			t.Fatal("not swept 30 s after the refresh")
		}
	})
	t.Run("keeps LastSeen", func(t *testing.T) {
		tab := newTable(t, func(c *Config) { c.Refresh = RefreshInside })
		res := tab.Create(inside(udp4(udpKey, 0)), t0, udpKey.Reply(), false)
		tab.Track(udp4(udpKey.Reply(), 0), at(time.Second))                      // assured: refresh
		tab.Track(udp4(udpKey.Reply(), 0), at(3*time.Second+5*time.Millisecond)) // seen, no refresh
		now := at(4 * time.Second)
		tab.SetTimeLeft([]Ref{res.Ref}, 10*time.Second, now)
		e, _ := tab.Get(res.Ref)
		if !e.LastSeen.Equal(at(3*time.Second+5*time.Millisecond)) || !e.LastRefresh.Add(e.Timeout).Equal(now.Add(10*time.Second)) {
			t.Fatalf("seen %v refresh %v", e.LastSeen.Sub(t0), e.LastRefresh.Sub(t0))
		}
	})
}
