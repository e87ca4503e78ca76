package report

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
	"github.com/idlegate/idlegate/scenarios"
)

const ms = time.Millisecond

// fromDouble makes the report of what the gateway double recorded.
func fromDouble(t *testing.T, g *gwDouble, opt CaptureOptions) *Report {
	t.Helper()
	opt.Policy = g.pol
	r, err := FromCapture("double", bytes.NewReader(g.bytes()), opt)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Views[0].Disagreed; d != 0 {
		t.Errorf("the report's replay disagrees with the gateway double on %d packets", d)
	}
	return r
}

// find returns the arrows that match.
func find(v *View, match func(a *Arrow) bool) []Arrow {
	var out []Arrow
	for _, a := range v.Sequence.Arrows {
		if match(&a) {
			out = append(out, a)
		}
	}
	return out
}

func lastRamp(c *Conn) Ramp { return c.Timer.Ramps[len(c.Timer.Ramps)-1] }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// The idle-reset story, played on the gateway double: every packet an arrow, the
// late write ending at idlegate with verdict reset and reason orphan, the RST it
// sends starting there, and a timer that fills to the deadline at 3 s and dies.
func TestIdleResetArrowsAndTimer(t *testing.T) {
	g := newGW(t, mustPolicy(t, "timeouts.tcp.established", "3s", "orphan", "reset"))
	c := newConv(t, 44336)
	last := g.open(c, 0)
	g.tick(3500 * ms)
	g.send(5*time.Second, policy.Outbound, c.fromClient("again\n"))
	r := fromDouble(t, g, CaptureOptions{})
	v := &r.Views[0]

	type want struct {
		kind     ArrowKind
		from, to Lifeline
		label    string
		verdict  string
		reason   string
	}
	fwd, reset, orphan := policy.Forward.String(), policy.Reset.String(), policy.ReasonOrphan.String()
	wants := []want{
		{Crossed, Client, Server, "SYN", fwd, policy.ReasonNew.String()},
		{Crossed, Server, Client, "SYN|ACK", fwd, policy.ReasonTracked.String()},
		{Crossed, Client, Server, "ACK", fwd, policy.ReasonTracked.String()},
		{Crossed, Client, Server, "PSH|ACK", fwd, policy.ReasonTracked.String()},
		{Crossed, Server, Client, "PSH|ACK", fwd, policy.ReasonTracked.String()},
		{Crossed, Client, Server, "ACK", fwd, policy.ReasonTracked.String()},
		{Dropped, Client, Gateway, "PSH|ACK", reset, orphan},
		{Injected, Gateway, Client, "RST", reset, orphan},
	}
	if len(v.Sequence.Arrows) != len(wants) {
		t.Fatalf("%d arrows, want %d: %+v", len(v.Sequence.Arrows), len(wants), v.Sequence.Arrows)
	}
	for i, w := range wants {
		a := v.Sequence.Arrows[i]
		if a.Kind != w.kind || a.From != w.from || a.To != w.to || a.Label != w.label || a.Verdict != w.verdict || a.Reason != w.reason || a.Count != 1 {
			t.Errorf("arrow %d: %s %s->%s %q %s %s x%d, want %s %s->%s %q %s %s", i, a.Kind, a.From, a.To, a.Label, a.Verdict, a.Reason, a.Count,
				w.kind, w.from, w.to, w.label, w.verdict, w.reason)
		}
		if a.Conn != 0 {
			t.Errorf("arrow %d belongs to connection %d, want 0 (the orphan and the RST too: the connection the box forgot)", i, a.Conn)
		}
	}
	if got := v.Sequence.Arrows[3].Bytes; got != 6 {
		t.Errorf("the data arrow says %d bytes, want 6", got)
	}

	if len(v.Conns) != 1 {
		t.Fatalf("%d connections, want 1", len(v.Conns))
	}
	cn := &v.Conns[0]
	if cn.End == nil || cn.End.Reason != conntrack.ReasonExpired {
		t.Fatalf("connection end %+v, want expired", cn.End)
	}
	if want := last + 3*time.Second; cn.End.At != want {
		t.Errorf("died at %v, want the deadline %v (last refresh + 3s), not when the sweep saw it (%v)", cn.End.At, want, cn.End.Seen)
	}
	if cn.End.Idle != 3*time.Second || cn.End.Timeout != 3*time.Second {
		t.Errorf("end idle %v timeout %v, want 3s and 3s", cn.End.Idle, cn.End.Timeout)
	}
	lr := lastRamp(cn)
	if lr.From != last || lr.To != cn.End.At || !near(lr.Fill(), 1) || lr.State != "ESTABLISHED" || lr.Timeout != 3*time.Second {
		t.Errorf("last ramp %+v fill %v, want from the last packet to the deadline, full, ESTABLISHED 3s", lr, lr.Fill())
	}
	var states []string
	for _, s := range cn.States {
		states = append(states, s.State)
	}
	if got := strings.Join(states, " "); got != "SYN_SENT SYN_RECV ESTABLISHED" {
		t.Errorf("states %q", got)
	}
	if s := cn.States[len(cn.States)-1]; s.To != cn.End.At || s.Timeout != 3*time.Second {
		t.Errorf("ESTABLISHED span %+v, want it to end at the death with timeout 3s", s)
	}
	notes := 0
	for _, n := range v.Sequence.Notes {
		if n.On == Gateway && strings.Contains(n.Text, "DESTROY") && strings.Contains(n.Text, "expired") && n.At == cn.End.At && n.Alarm {
			notes++
		}
	}
	if notes != 1 {
		t.Errorf("%d DESTROY ... expired notes on the idlegate lifeline at the deadline, want 1: %+v", notes, v.Sequence.Notes)
	}
	if r.Views[0].Occupancy.Peak != 1 {
		t.Errorf("occupancy peak %d, want 1", r.Views[0].Occupancy.Peak)
	}
}

// Keepalive probes are marked; under refresh any each empties the timer, under
// refresh data (the AWS ALB) none does and the connection expires despite them.
func TestKeepaliveProbesAndRefresh(t *testing.T) {
	for _, tc := range []struct {
		name     string
		refresh  string
		refreshd bool
	}{{"refresh any", "any", true}, {"refresh data", "data", false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGW(t, mustPolicy(t, "timeouts.tcp.established", "3s", "orphan", "reset", "refresh", tc.refresh))
			c := newConv(t, 44400)
			last := g.open(c, 0)
			for i := 1; i <= 4; i++ {
				d := last + time.Duration(i)*time.Second
				g.send(d, policy.Outbound, c.probe())
				g.send(d+ms, policy.Inbound, c.probeAck())
			}
			g.send(last+4500*ms, policy.Outbound, c.fromClient("again\n"))
			r := fromDouble(t, g, CaptureOptions{})
			v := &r.Views[0]
			probes := find(v, func(a *Arrow) bool { return a.Keepalive })
			if len(probes) == 0 {
				t.Fatal("no arrow is marked as a keepalive probe")
			}
			crossed := 0
			for _, p := range probes {
				if p.Kind == Crossed && p.From == Client && p.Label == "ACK" {
					crossed++
					if p.Refreshed != tc.refreshd {
						t.Errorf("probe at %v: refreshed %v, want %v", p.At, p.Refreshed, tc.refreshd)
					}
				}
			}
			cn := &v.Conns[0]
			if tc.refreshd {
				if crossed != 4 || len(cn.Timer.Probes) != 4 {
					t.Fatalf("%d probe arrows crossed, %d probes on the timer; want 4 and 4", crossed, len(cn.Timer.Probes))
				}
				if cn.End != nil {
					t.Errorf("the connection ended (%+v); its probes should have kept it", cn.End)
				}
				for _, rp := range cn.Timer.Ramps {
					if rp.Fill() >= 0.5 {
						t.Errorf("ramp %+v filled to %.2f: a probe every 1s keeps a 3s timer below 1/3", rp, rp.Fill())
					}
				}
				for _, p := range cn.Timer.Probes {
					if !p.Refreshed {
						t.Errorf("probe at %v did not refresh", p.At)
					}
				}
				return
			}
			// refresh data: the last refresh is the server's echo, 1 ms before the
			// client's bare ACK; the third probe finds the entry expired, so only two
			// cross, neither refreshing.
			data := last - ms
			if cn.End == nil || cn.End.Reason != conntrack.ReasonExpired || cn.End.At != data+3*time.Second {
				t.Fatalf("end %+v, want expired at the deadline %v: probes and bare ACKs do not count", cn.End, data+3*time.Second)
			}
			if lr := lastRamp(cn); !near(lr.Fill(), 1) || lr.From != data {
				t.Errorf("last ramp %+v: want one ramp from the last data to the deadline", lr)
			}
			if crossed != 2 || len(cn.Timer.Probes) != 2 {
				t.Errorf("%d probes crossed, %d on the timer; want 2 and 2 (the others met no entry)", crossed, len(cn.Timer.Probes))
			}
			for _, p := range cn.Timer.Probes {
				if p.Refreshed {
					t.Errorf("probe at %v refreshed under refresh data", p.At)
				}
			}
			// The other two probes meet no entry: orphans, no longer known as probes.
			late := find(v, func(a *Arrow) bool {
				return a.Kind == Dropped && a.From == Client && a.Label == "ACK" && a.Reason == policy.ReasonOrphan.String()
			})
			if len(late) != 2 {
				t.Errorf("%d probes dropped as orphans, want 2", len(late))
			}
		})
	}
}

// NAT rewrites are written on the arrows: outbound the source, inbound the
// destination back.
func TestNATRewritesShown(t *testing.T) {
	g := newGW(t, mustPolicy(t, "nat.outside", "198.19.0.1", "nat.enabled", "true"))
	c := newConv(t, 44500)
	g.send(0, policy.Outbound, c.syn())
	// The server answers the outside mapping: the gateway's first port.
	// The server answers the outside mapping, the first port of the range.
	g.send(ms, policy.Inbound, rewriteDst(t, c.synAck(), netip.MustParseAddrPort("198.19.0.1:1024")))
	r := fromDouble(t, g, CaptureOptions{})
	v := &r.Views[0]
	if len(v.Sequence.Arrows) != 2 {
		t.Fatalf("%d arrows, want 2", len(v.Sequence.Arrows))
	}
	if got, want := v.Sequence.Arrows[0].NAT, "198.18.0.2:44500 → 198.19.0.1:1024"; got != want {
		t.Errorf("SYN's NAT %q, want %q", got, want)
	}
	if got, want := v.Sequence.Arrows[1].NAT, "198.19.0.1:1024 → 198.18.0.2:44500"; got != want {
		t.Errorf("SYN-ACK's NAT %q, want %q", got, want)
	}
	if got := v.Conns[0].Name; !strings.Contains(got, "(nat 198.19.0.1:1024)") {
		t.Errorf("connection %q does not name its mapping", got)
	}
}

// A full table with LRU eviction: occupancy reaches the capacity, the least
// recently used entry is evicted and its next packet is an orphan.
func TestTableFullOccupancyAndEviction(t *testing.T) {
	g := newGW(t, mustPolicy(t, "capacity", "2", "on_full", "evict-lru", "orphan", "reset"))
	a, b, c := newConv(t, 45001), newConv(t, 45002), newConv(t, 45003)
	g.open(a, 0)
	g.open(b, 100*ms)
	g.open(c, 200*ms) // evicts a, the least recently used
	g.send(300*ms, policy.Outbound, a.fromClient("late\n"))
	r := fromDouble(t, g, CaptureOptions{})
	v := &r.Views[0]
	o := v.Occupancy
	if o.Capacity != 2 || o.Peak != 2 || o.Evicted != 1 || len(o.Evictions) != 1 || o.Evictions[0] != 200*ms {
		t.Errorf("occupancy %+v, want capacity 2, peak 2, one eviction at 200ms", o)
	}
	if len(v.Conns) != 3 || v.Conns[0].End == nil || v.Conns[0].End.Reason != conntrack.ReasonEvicted || v.Conns[0].End.At != 200*ms {
		t.Fatalf("connections %+v: want the first evicted at 200ms", v.Conns)
	}
	if v.Conns[1].End != nil || v.Conns[2].End != nil {
		t.Errorf("the other two ended: %+v %+v", v.Conns[1].End, v.Conns[2].End)
	}
	late := find(v, func(x *Arrow) bool { return x.Kind == Dropped })
	if len(late) != 1 || late[0].Conn != 0 || late[0].Reason != policy.ReasonOrphan.String() {
		t.Errorf("dropped arrows %+v, want the evicted connection's late write, an orphan", late)
	}
	if o.Points[len(o.Points)-1].Entries != 2 {
		t.Errorf("occupancy ends at %d entries, want 2", o.Points[len(o.Points)-1].Entries)
	}
}

// reset_on_expire: at the deadline the gateway sends a RST to both ends; the arrows
// start at idlegate.
func TestResetOnExpireArrows(t *testing.T) {
	g := newGW(t, mustPolicy(t, "timeouts.tcp.established", "3s", "reset_on_expire", "true"))
	c := newConv(t, 45100)
	last := g.open(c, 0)
	g.tick(last + 3*time.Second + 50*ms) // the gateway's sweeper, a little after the deadline
	r := fromDouble(t, g, CaptureOptions{End: at(4 * time.Second)})
	v := &r.Views[0]
	rsts := find(v, func(a *Arrow) bool { return a.Kind == ExpiryReset })
	if len(rsts) != 2 {
		t.Fatalf("%d expiry RSTs, want 2", len(rsts))
	}
	to := map[Lifeline]bool{}
	for _, a := range rsts {
		to[a.To] = true
		if a.From != Gateway || !strings.HasPrefix(a.Label, "RST") || a.Reason != "reset_on_expire" {
			t.Errorf("expiry RST %+v", a)
		}
	}
	if !to[Client] || !to[Server] {
		t.Errorf("expiry RSTs go to %v, want both ends", to)
	}
	if e := v.Conns[0].End; e == nil || e.Reason != conntrack.ReasonExpired || e.At != last+3*time.Second {
		t.Errorf("end %+v, want expired at the deadline", e)
	}
}

// A flush step of a scenario ends every entry at its time, in the report's replay too.
func TestFlushActionEndsEntries(t *testing.T) {
	g := newGW(t, mustPolicy(t, "orphan", "pickup"))
	c := newConv(t, 45200)
	g.open(c, 0)
	g.eng.Flush(at(time.Second))
	g.send(2*time.Second, policy.Outbound, c.fromClient("after\n"))
	r := fromDouble(t, g, CaptureOptions{Actions: []scenarios.Action{{At: at(time.Second), Flush: true}}})
	v := &r.Views[0]
	if len(v.Conns) != 2 {
		t.Fatalf("%d connections, want 2 (the flushed one and the one picked up after)", len(v.Conns))
	}
	if e := v.Conns[0].End; e == nil || e.Reason != conntrack.ReasonFlushed || e.At != time.Second {
		t.Errorf("first entry's end %+v, want flushed at 1s", e)
	}
	if v.Conns[1].Born != 2*time.Second {
		t.Errorf("the picked-up entry was born at %v, want 2s", v.Conns[1].Born)
	}
	a := v.Sequence.Arrows[len(v.Sequence.Arrows)-1]
	if a.Kind != Crossed || a.Reason != policy.ReasonPickup.String() || a.Conn != 1 {
		t.Errorf("the write after the flush: %+v, want crossed, picked up, connection 1", a)
	}
	flush := 0
	for _, n := range v.Sequence.Notes {
		if strings.HasPrefix(n.Text, "FLUSH") && n.At == time.Second {
			flush++
		}
	}
	if flush != 1 {
		t.Errorf("%d FLUSH notes at 1s, want 1", flush)
	}
}

// Without the flush action the report's replay disagrees with the gateway, and says so.
func TestDisagreementIsSaid(t *testing.T) {
	g := newGW(t, mustPolicy(t, "orphan", "reset"))
	c := newConv(t, 45300)
	g.open(c, 0)
	g.eng.Flush(at(time.Second))
	g.send(2*time.Second, policy.Outbound, c.fromClient("after\n"))
	r, err := FromCapture("double", bytes.NewReader(g.bytes()), CaptureOptions{Policy: g.pol})
	if err != nil {
		t.Fatal(err)
	}
	if r.Views[0].Disagreed != 1 {
		t.Errorf("disagreed on %d packets, want 1", r.Views[0].Disagreed)
	}
	said := false
	for _, n := range r.Notes {
		said = said || strings.Contains(n, "another verdict than the gateway wrote")
	}
	if !said {
		t.Errorf("the notes do not say so: %q", r.Notes)
	}
	// The arrow is still the gateway's word (then its RST).
	a := r.Views[0].Sequence.Arrows[len(r.Views[0].Sequence.Arrows)-2]
	if a.Kind != Dropped || a.Verdict != policy.Reset.String() {
		t.Errorf("last arrow %+v, want the gateway's reset", a)
	}
}

func TestNotAnIdlegateCapture(t *testing.T) {
	// A pcapng as tcpdump writes it: one interface of its own name.
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	syn := newConv(t, 40000).syn()
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(syn), Length: len(syn)}, syn); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err = FromCapture("tcpdump.pcapng", &buf, CaptureOptions{Policy: policy.Default()})
	if !errors.Is(err, ErrNotIdlegate) || !strings.Contains(err.Error(), "idlegate replay tcpdump.pcapng") {
		t.Fatalf("err = %v, want ErrNotIdlegate naming replay", err)
	}
}

// A replay across profiles: one row per flow, one column per profile, each lane's
// own arrows and timers, and the 400 s idle broken out of the time axis.
func TestReplayMatrixAndLanes(t *testing.T) {
	g := newGW(t, policy.Default())
	c := newConv(t, 40000)
	last := g.open(c, 0)
	idle := 400 * time.Second
	g.send(last+idle, policy.Outbound, c.fromClient("again\n"))
	g.send(last+idle+ms, policy.Inbound, c.fromServer("again\n"))
	var profs []replay.Profile
	for _, n := range []string{"linux-conntrack", "aws-nat-gateway", "azure-lb-tcp-reset"} {
		pr, err := policy.LookupProfile(n)
		if err != nil {
			t.Fatal(err)
		}
		profs = append(profs, replay.Profile{Name: pr.Name, Policy: pr.Policy()})
	}
	r, rr, err := FromReplay("double.pcapng", bytes.NewReader(g.bytes()), replay.Options{Profiles: profs})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Matrix
	if m == nil || len(m.Rows) != 1 || len(m.Profiles) != 3 || m.Summary != rr.Summary {
		t.Fatalf("matrix %+v", m)
	}
	row := m.Rows[0]
	if row.LongestIdle != idle || row.Packets != 8 {
		t.Errorf("row %+v: want 8 packets and a longest idle of 400s", row)
	}
	outcomes := []replay.Outcome{replay.Survived, replay.Reset, replay.ResetAtExpiry}
	inForce := []time.Duration{432000 * time.Second, 350 * time.Second, 240 * time.Second}
	for i, cell := range row.Cells {
		if cell.Outcome != outcomes[i] {
			t.Errorf("%s: outcome %s, want %s", m.Profiles[i].Name, cell.Outcome, outcomes[i])
		}
		if cell.InForce != inForce[i] {
			t.Errorf("%s: timeout in force %v, want %v", m.Profiles[i].Name, cell.InForce, inForce[i])
		}
		if broke := cell.Outcome != replay.Survived; broke != (cell.Peak >= 1) {
			t.Errorf("%s: the longest idle fills the timer to %.3f, outcome %s", m.Profiles[i].Name, cell.Peak, cell.Outcome)
		}
	}
	// Lanes: aws-nat-gateway resets the late write; azure resets both ends at the deadline.
	nat := &r.Views[1]
	if d := find(nat, func(a *Arrow) bool {
		return a.Kind == Dropped && a.Verdict == policy.Reset.String() && a.Reason == policy.ReasonOrphan.String() && a.At == last+idle
	}); len(d) != 1 {
		t.Errorf("aws-nat-gateway: %d late writes reset as orphans, want 1", len(d))
	}
	if inj := find(nat, func(a *Arrow) bool { return a.Kind == Injected && a.To == Client && a.Label == "RST" }); len(inj) != 1 {
		t.Errorf("aws-nat-gateway: %d RSTs to the client, want 1", len(inj))
	}
	az := &r.Views[2]
	if rst := find(az, func(a *Arrow) bool { return a.Kind == ExpiryReset && a.At == last+240*time.Second }); len(rst) != 2 {
		t.Errorf("azure-lb-tcp-reset: %d RSTs at the deadline +240s, want 2", len(rst))
	}
	if len(r.Views[0].Conns) != 1 || r.Views[0].Conns[0].End != nil {
		t.Errorf("linux-conntrack: the entry ended: %+v", r.Views[0].Conns)
	}
	// The 400 s idle is broken out; the 5 ms handshake keeps its width.
	ax := (&page{r: r}).viewAxis(nat)
	if !ax.Broken() {
		t.Fatalf("the axis does not break the 400s gap out: %+v", ax.Spans)
	}
	if w := ax.X(5*ms) - ax.X(0); w < minCluster*0.9 {
		t.Errorf("the handshake is %.1f px wide, want about %d at least", w, minCluster)
	}
}

// rewriteDst addresses pkt to dst, checksums patched.
func rewriteDst(t *testing.T, pkt []byte, dst netip.AddrPort) []byte {
	t.Helper()
	var p packet.Info
	if err := packet.Decode(pkt, &p); err != nil {
		t.Fatal(err)
	}
	if !packet.SetDestination(pkt, &p, dst.Addr(), dst.Port()) {
		t.Fatal("cannot rewrite the destination")
	}
	return pkt
}
