package policy

import (
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

func port(p uint16) Filter {
	return func(e *conntrack.EntryInfo) bool { return e.Orig.SrcPort == p }
}

// TestDelete: conntrack -D: the connection is gone now, with its NAT mapping and its
// per-source count; its next packet is an orphan, and no RST is sent.
func TestDelete(t *testing.T) {
	r, seen := natRig(t, nil)
	other := ap(client4, 41000)
	sub := r.e.Subscribe(64)
	defer sub.Close()
	if n := r.e.Delete(r.now, port(1)); n != 0 {
		t.Fatalf("deleted %d matching nothing", n)
	}
	if n := r.e.Delete(r.now, port(cli.Port())); n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	evs := drain(sub)
	if len(evs) != 1 || evs[0].Type != conntrack.EventDestroy || evs[0].Reason != conntrack.ReasonDeleted {
		t.Fatalf("events %v", evs)
	}
	if s := r.e.Stats(); s.NATMaps != 0 || r.e.Len() != 0 || s.Table.Destroyed[conntrack.ReasonDeleted] != 1 {
		t.Fatalf("after delete: %d mappings, %d entries, stats %+v", s.NATMaps, r.e.Len(), s.Table)
	}
	r.send(tcp(t, srv, seen, "PA", 5001, 1003, "late"), Inbound, Drop, ReasonNATNoMapping)
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Drop, ReasonOrphan)
	// The per-source count went with it: the source may open again (limit 1).
	r.send(tcp(t, other, srv, "S", 1, 0, ""), Outbound, Forward, ReasonNew)
	if l := r.e.List(r.now, nil); len(l) != 1 || l[0].Orig.SrcPort != other.Port() {
		t.Fatalf("List %+v", l)
	}
	if l := r.e.List(r.now, port(1)); len(l) != 0 {
		t.Fatalf("filtered List %+v", l)
	}
}

// TestExpire: the connection ends exactly as its idle timeout would end it: reason
// expired, and reset_on_expire's two RSTs returned, at both ends' rcv.nxt.
func TestExpire(t *testing.T) {
	r, seen := natRig(t, func(p *Policy) { p.ResetOnExpire = true })
	sub := r.e.Subscribe(64)
	defer sub.Close()
	n, out := r.e.Expire(r.now, nil, nil)
	if n != 1 || len(out) != 2 {
		t.Fatalf("expired %d, %d RSTs; want 1 and 2", n, len(out))
	}
	for _, inj := range out {
		d := decode(t, inj.Packet)
		switch {
		case !d.tcp.RST:
			t.Fatal("not a RST")
		case inj.To == Inside && (d.dst != client4 || d.src != server4 || d.tcp.Seq != 5001):
			t.Fatalf("RST to client: %s -> %s seq %d", d.src, d.dst, d.tcp.Seq)
		case inj.To == Outside && (d.dst != server4 || d.src != seen.Addr() || d.sport != seen.Port() || d.tcp.Seq != 1003):
			t.Fatalf("RST to server: %s:%d -> %s seq %d", d.src, d.sport, d.dst, d.tcp.Seq)
		}
	}
	if out[0].To == out[1].To {
		t.Fatal("both RSTs go to the same side")
	}
	evs := drain(sub)
	if len(evs) != 1 || evs[0].Reason != conntrack.ReasonExpired || evs[0].Idle < evs[0].Timeout {
		t.Fatalf("events %v", evs)
	}
	if s := r.e.Stats(); s.NATMaps != 0 || s.Injected != 2 {
		t.Fatalf("after expire: %d mappings, %d injected", s.NATMaps, s.Injected)
	}
	r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Drop, ReasonOrphan)
}

// TestExpireClosing: a connection in TIME_WAIT expires as its timeout would: reason
// closed, no RST.
func TestExpireClosing(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.ResetOnExpire = true })
	r.handshake(cli, srv)
	r.send(tcp(t, cli, srv, "FA", 1003, 5001, ""), Outbound, Forward, ReasonTracked)
	r.send(tcp(t, srv, cli, "FA", 5001, 1004, ""), Inbound, Forward, ReasonTracked)
	r.send(tcp(t, cli, srv, "A", 1004, 5002, ""), Outbound, Forward, ReasonTracked)
	n, out := r.e.Expire(r.now, nil, nil)
	if s := r.e.Stats().Table; n != 1 || len(out) != 0 || s.Destroyed[conntrack.ReasonClosed] != 1 {
		t.Fatalf("expired %d, %d RSTs, destroyed %v", n, len(out), s.Destroyed)
	}
}

// TestSetTimeLeft: conntrack -U --timeout: the connection lives exactly as long as it
// was given, then expires on the timeout path; the packet that finds it gets the
// RSTs of reset_on_expire.
func TestSetTimeLeft(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.ResetOnExpire = true })
	r.handshake(cli, srv)
	if n := r.e.SetTimeLeft(r.now, port(cli.Port()), 2*time.Second); n != 1 {
		t.Fatalf("SetTimeLeft = %d", n)
	}
	if l := r.e.List(r.now, nil); len(l) != 1 || l[0].TimeLeft != 2*time.Second {
		t.Fatalf("List %+v", l)
	}
	if out := r.e.Tick(r.now.Add(2*time.Second-time.Nanosecond), nil); len(out) != 0 || r.e.Len() != 1 {
		t.Fatalf("gone early: %d RSTs, %d entries", len(out), r.e.Len())
	}
	r.advance(2 * time.Second)
	res := r.send(tcp(t, cli, srv, "PA", 1003, 5001, "x"), Outbound, Drop, ReasonOrphan)
	if len(res.Inject) != 2 {
		t.Fatalf("%d packets injected with the orphan, want the 2 RSTs of its expiry", len(res.Inject))
	}
}

// TestFlushEvents: a flush publishes one DESTROY flushed per connection.
func TestFlushEvents(t *testing.T) {
	r := newRig(t, nil)
	r.handshake(cli, srv)
	r.send(udp(t, ap(client4, 5353), ap(server4, 7000), "q"), Outbound, Forward, ReasonNew)
	sub := r.e.Subscribe(64)
	defer sub.Close()
	if n := r.e.Flush(r.now); n != 2 {
		t.Fatalf("flushed %d", n)
	}
	evs := drain(sub)
	if len(evs) != 2 || evs[0].Reason != conntrack.ReasonFlushed || evs[1].Reason != conntrack.ReasonFlushed {
		t.Fatalf("events %v", evs)
	}
}
