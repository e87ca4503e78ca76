package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// TestAdopt: a connection open before the gateway came into its path is picked up
// mid-stream on its next ACK-class segment, from either side, under orphan: reset
// and under NAT (untranslated); once the gateway forgets it, the orphan rule
// applies to it like to any other; a flow not adopted gets the orphan rule at once.
func TestAdopt(t *testing.T) {
	for _, tt := range []struct {
		name string
		nat  bool
		dir  Dir // the side whose segment comes first after the wedge
	}{
		{"client-first", false, Outbound},
		{"server-first", false, Inbound},
		{"nat-client-first", true, Outbound},
		{"nat-server-first", true, Inbound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(p *Policy) {
				p.Orphan = OrphanReset
				p.Timeouts.TCP.Established = Duration(5 * time.Second)
				p.NAT = NAT{Enabled: tt.nat, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
			})
			other := ap(client4, 40001)
			// Keyed as the client's socket sees it: the engine matches either way.
			if n := r.e.Adopt([]conntrack.Key{conntrack.MakeKey(conntrack.ProtoTCP, cli, srv)}); n != 1 {
				t.Fatalf("Adopt = %d, want 1", n)
			}
			// A flow not adopted is an orphan under the policy.
			r.send(tcp(t, other, srv, "A", 7, 9, ""), Outbound, Reset, ReasonOrphan)
			// A RST is not picked up, and does not end the adoption.
			r.send(tcp(t, cli, srv, "R", 1003, 0, ""), Outbound, Drop, ReasonOrphan)
			var res *Result
			if tt.dir == Outbound {
				res = r.send(tcp(t, cli, srv, "PA", 1003, 5001, "hi"), Outbound, Forward, ReasonPickup)
				r.send(tcp(t, srv, cli, "A", 5001, 1005, ""), Inbound, Forward, ReasonTracked)
			} else {
				res = r.send(tcp(t, srv, cli, "PA", 5001, 1003, "hi"), Inbound, Forward, ReasonPickup)
				r.send(tcp(t, cli, srv, "A", 1003, 5003, ""), Outbound, Forward, ReasonTracked)
			}
			if d := decode(t, res.Packet); d.src != res.Info.Src || d.sport != res.Info.SrcPort {
				t.Errorf("an adopted flow was translated: left as %s:%d", d.src, d.sport)
			}
			if got := r.e.Adopting(); got != 0 {
				t.Errorf("Adopting = %d after the pickup, want 0", got)
			}
			l := r.e.List(r.now, nil)
			if len(l) != 1 || l[0].State != conntrack.TCPEstablished || l[0].Reply != l[0].Orig.Reply() {
				t.Fatalf("table after the pickup: %+v; want one ESTABLISHED entry without NAT", l)
			}
			// Forgotten later, it is an orphan like any other.
			r.advance(6 * time.Second)
			r.send(tcp(t, cli, srv, "PA", 1005, 5001, "hi"), Outbound, Reset, ReasonOrphan)
		})
	}
}

// TestAdoptSYNStartsOver: a SYN on an adopted tuple is a new connection, opened
// (and translated) the ordinary way; the adoption is over.
func TestAdoptSYNStartsOver(t *testing.T) {
	r := newRig(t, func(p *Policy) {
		p.Orphan = OrphanDrop
		p.NAT = NAT{Enabled: true, Outside: []netip.Addr{out4}, Ports: PortRange{20000, 20100}}
	})
	r.e.Adopt([]conntrack.Key{conntrack.MakeKey(conntrack.ProtoTCP, srv, cli)})
	res := r.send(tcp(t, cli, srv, "S", 1000, 0, ""), Outbound, Forward, ReasonNew)
	if d := decode(t, res.Packet); d.src != out4 {
		t.Errorf("a SYN on an adopted tuple left as %s, want NAT's %s", d.src, out4)
	}
	if got := r.e.Adopting(); got != 0 {
		t.Errorf("Adopting = %d after a SYN, want 0", got)
	}
	// Non-TCP flows are not adopted.
	if n := r.e.Adopt([]conntrack.Key{conntrack.MakeKey(conntrack.ProtoUDP, cli, srv)}); n != 0 {
		t.Errorf("Adopt of a UDP flow = %d, want 0", n)
	}
}
