package policy

import (
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// Adoption: connections that were open before the gateway came into their path (a
// wedge put between two running namespaces) are not orphans the gateway forgot: it
// never saw them open. Linux's conntrack meets such flows after a reboot or a
// failover and, with nf_conntrack_tcp_loose=1 (its default), picks them up on their
// next segment. The engine does the same for the flows it is told of, whatever the
// policy's orphan rule says for the connections it forgets later.

// Adopt names TCP connections open before the gateway was put in their path, each
// by its tuple as on the wire in either direction. The next packet of each that is
// of the ACK class (no SYN, FIN or RST) opens its entry mid-stream, in ESTABLISHED,
// as nf_conntrack_tcp_loose=1 does (reason pickup), whatever the orphan rule says,
// and without NAT: both ends already know each other's addresses. A SYN on the
// tuple starts a new connection the ordinary way and ends the adoption. Once
// picked up the connection is like any other: if the gateway forgets it, its next
// packets are orphans. Adopt returns how many flows wait to be picked up.
func (e *Engine) Adopt(flows []conntrack.Key) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range flows {
		if k.Proto != conntrack.ProtoTCP {
			continue
		}
		if e.adopt == nil {
			e.adopt = map[conntrack.Key]struct{}{}
		}
		e.adopt[k] = struct{}{}
	}
	return len(e.adopt)
}

// Adopting is how many adopted flows have not been picked up yet.
func (e *Engine) Adopting() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.adopt)
}

// adoptLocked picks up an adopted flow's packet of no live connection (e.cp holds
// its tuple) and reports whether it did; if not, the packet goes the ordinary way.
func (e *Engine) adoptLocked(pkt []byte, p *packet.Info, dir Dir, now time.Time, res *Result) bool {
	k := e.cp.Key
	if _, ok := e.adopt[k]; !ok {
		k = k.Reply()
		if _, ok := e.adopt[k]; !ok {
			return false
		}
	}
	if conntrack.CanOpen(p.TCPFlags, false) {
		delete(e.adopt, k) // a SYN: a new connection on the same tuple
		return false
	}
	if !conntrack.CanOpen(p.TCPFlags, true) {
		return false // a SYN-ACK, FIN or RST: not picked up (tcp_new); a later segment may be
	}
	delete(e.adopt, k)
	r := e.ctCreateLocked(now, e.cp.Key.Reply(), true)
	res.Conn = r
	if !e.created(pkt, p, dir, res, &r) {
		return true
	}
	res.Verdict, res.Reason = Forward, ReasonPickup
	return true
}
