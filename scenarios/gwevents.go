package scenarios

import (
	"fmt"
	"sync"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// gwEvent is what a port-filtered gateway counter needs of one event.
type gwEvent struct {
	at      time.Time
	counter string
	ports   [2]uint16 // both ports of the tuple: a filter matches the server's either way
}

// gwRecorder turns the engine's events into timeline rows and counts them.
type gwRecorder struct {
	tl  *timeline
	pol func() policy.Policy

	mu     sync.Mutex
	events []gwEvent
}

func (g *gwRecorder) count(at time.Time, counter string, k conntrack.Key) {
	g.mu.Lock()
	g.events = append(g.events, gwEvent{at, counter, [2]uint16{k.SrcPort, k.DstPort}})
	g.mu.Unlock()
}

// countPorts counts events of counter up to end with a port in ports. Both ends of the
// tuple are compared, so that a packet from the server (an orphan on its way in) counts
// for the server's port too; the clients' ephemeral ports are far from the story's ports.
func (g *gwRecorder) countPorts(counter string, ports []int, end time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.events {
		if e.counter != counter || e.at.After(end) {
			continue
		}
		for _, p := range ports {
			if int(e.ports[0]) == p || int(e.ports[1]) == p {
				n++
				break
			}
		}
	}
	return n
}

// connName names a connection by protocol and ports: the lab's addresses are fixed,
// so "tcp 41234->7000" is enough; NAT adds the outside port.
func connName(orig, reply conntrack.Key) string {
	name := conntrack.ProtoName(orig.Proto)
	src, dst := orig.SrcAddrPort(), orig.DstAddrPort()
	s := fmt.Sprintf("%s %d->%d", name, src.Port(), dst.Port())
	if a := src.Addr().Unmap(); a != lab.ClientAddr4 && a != lab.ClientAddr6 {
		s = fmt.Sprintf("%s %s->%s", name, src, dst)
	}
	if reply != (conntrack.Key{}) && reply != orig.Reply() {
		if p := reply.DstAddrPort().Port(); p != src.Port() {
			s += fmt.Sprintf(" (nat :%d)", p)
		}
	}
	return s
}

// record handles one event.
func (g *gwRecorder) record(ev policy.Event) {
	c := connName(ev.Orig, ev.Reply)
	switch ev.Type {
	case conntrack.EventNew:
		g.count(ev.Time, "new", ev.Orig)
		g.tl.add(ev.Time, colGateway, "NEW "+c)
	case conntrack.EventUpdate:
		if ev.State == ev.OldState || ev.State == conntrack.TCPSynRecv || ev.State == conntrack.TCPSynSent {
			return // assured, or half-way through the handshake: no news for the story
		}
		if ev.State == conntrack.TCPTimeWait {
			g.count(ev.Time, "time_wait", ev.Orig)
		}
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("%s %s", c, ev.State))
	case conntrack.EventDestroy:
		g.count(ev.Time, ev.Reason.String(), ev.Orig)
		switch ev.Reason {
		case conntrack.ReasonExpired:
			line := fmt.Sprintf("DESTROY %s expired: idle %.1fs >= timeout %s", c, ev.Idle.Seconds(), ev.Timeout)
			if g.pol().ResetOnExpire && ev.Proto == conntrack.ProtoTCP && ev.State == conntrack.TCPEstablished {
				line += "; RST to both ends (reset_on_expire)"
			}
			g.tl.add(ev.Time, colGateway, line)
		case conntrack.ReasonEvicted:
			g.tl.add(ev.Time, colGateway, fmt.Sprintf("DESTROY %s evicted to make room (idle %.1fs)", c, ev.Idle.Seconds()))
		case conntrack.ReasonClosed:
			g.tl.add(ev.Time, colGateway, fmt.Sprintf("DESTROY %s closed (%s over)", c, ev.State))
		default:
			g.tl.add(ev.Time, colGateway, fmt.Sprintf("DESTROY %s %s", c, ev.Reason))
		}
	case conntrack.EventVerdict:
		g.verdict(ev, c)
	}
}

func (g *gwRecorder) verdict(ev policy.Event, c string) {
	if ev.Keepalive {
		g.count(ev.Time, "keepalive_probes", ev.Orig)
	}
	switch ev.Cause {
	case policy.ReasonOrphan:
		g.count(ev.Time, "orphans", ev.Orig)
	case policy.ReasonPickup:
		g.count(ev.Time, "pickups", ev.Orig)
	case policy.ReasonTableFull:
		g.count(ev.Time, "table_full", ev.Orig)
	case policy.ReasonSourceLimit:
		g.count(ev.Time, "source_limit", ev.Orig)
	}
	if ev.Verdict == policy.Reset || ev.Verdict == policy.Reject {
		g.count(ev.Time, "resets", ev.Orig)
	}
	what := "packet"
	if ev.Keepalive {
		what = "keepalive probe"
	}
	switch {
	case ev.Cause == policy.ReasonNotForwarded, ev.Cause == policy.ReasonUntracked && ev.Verdict == policy.Forward:
		return
	case ev.Verdict == policy.Forward && ev.Keepalive:
		r := g.pol().Refresh
		if r == policy.Refresh(conntrack.RefreshData) || r == policy.Refresh(conntrack.RefreshNoKeepalive) {
			g.tl.add(ev.Time, colGateway, fmt.Sprintf("keepalive probe %s forwarded, does NOT refresh (refresh: %s)", c, r))
		} else {
			g.tl.add(ev.Time, colGateway, "keepalive probe "+c+" forwarded: refreshes")
		}
	case ev.Verdict == policy.Forward && ev.Cause == policy.ReasonPickup:
		g.tl.add(ev.Time, colGateway, "no entry for "+c+": picked up mid-stream (orphan: pickup)")
	case ev.Verdict == policy.Forward:
		return
	case ev.Cause == policy.ReasonOrphan && ev.Verdict == policy.Drop:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("no entry for %s: %s dropped (orphan: drop)", c, what))
	case ev.Cause == policy.ReasonOrphan && ev.Verdict == policy.Reset:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("no entry for %s: %s dropped, RST sent back (orphan: reset)", c, what))
	case ev.Cause == policy.ReasonOrphan:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("no entry for %s: %s dropped, ICMP sent back", c, what))
	case ev.Cause == policy.ReasonTableFull:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("table full: new %s refused (%s)", c, ev.Verdict))
	case ev.Cause == policy.ReasonSourceLimit:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("max_conns_per_source reached: %s refused (%s)", c, ev.Verdict))
	default:
		g.tl.add(ev.Time, colGateway, fmt.Sprintf("%s %s (%s)", ev.Verdict, c, ev.Cause))
	}
}

// counterFromStats reads an unfiltered counter from the engine's statistics; ok is
// false for counters only events give.
func counterFromStats(s policy.Stats, counter string) (uint64, bool) {
	switch counter {
	case "new":
		return s.Table.Created, true
	case "expired":
		return s.Table.Destroyed[conntrack.ReasonExpired], true
	case "evicted":
		return s.Table.Destroyed[conntrack.ReasonEvicted], true
	case "closed":
		return s.Table.Destroyed[conntrack.ReasonClosed], true
	case "flushed":
		return s.Table.Destroyed[conntrack.ReasonFlushed], true
	case "keepalive_probes":
		return s.Table.KeepaliveProbes, true
	case "table_full":
		return s.Reasons[policy.ReasonTableFull], true
	case "orphans":
		return s.Reasons[policy.ReasonOrphan], true
	case "pickups":
		return s.Reasons[policy.ReasonPickup], true
	case "source_limit":
		return s.Reasons[policy.ReasonSourceLimit], true
	case "resets":
		return s.Injected, true
	}
	return 0, false
}
