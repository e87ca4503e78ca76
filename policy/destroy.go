package policy

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// The end of a connection. The table reports every entry a call destroyed into
// e.gone (conntrack.Destroyed); the engine then, under mu:
//
//  1. releases what it held for the entry, right after the call and before it
//     decides anything else: the per-source count and the NAT mapping, so that
//     neither outlives the entry (the wrappers below);
//  2. ends it, once the call into the engine is done: the RSTs of reset_on_expire
//     for an ESTABLISHED TCP connection that expired, and the DESTROY event
//     (endIntoLocked for a packet's Result, endAllLocked for Tick and the
//     operator verbs).

// The ct...Locked functions are the engine's calls into the table that can destroy
// entries; each releases what the destroyed entries held. Call them with e.mu held.

func (e *Engine) ctTrackLocked(now time.Time) conntrack.Result {
	n := len(e.gone)
	r := e.table.Track(&e.cp, now, &e.gone)
	if len(e.gone) > n {
		e.releaseLocked(e.gone[n:])
	}
	return r
}

func (e *Engine) ctCreateLocked(now time.Time, reply conntrack.Key, pickup bool) conntrack.Result {
	n := len(e.gone)
	r := e.table.Create(&e.cp, now, reply, pickup, &e.gone)
	if len(e.gone) > n {
		e.releaseLocked(e.gone[n:])
	}
	return r
}

func (e *Engine) ctLookupLocked(k conntrack.Key, now time.Time) (conntrack.Ref, conntrack.Dir, bool) {
	n := len(e.gone)
	ref, d, ok := e.table.Lookup(k, now, &e.gone)
	if len(e.gone) > n {
		e.releaseLocked(e.gone[n:])
	}
	return ref, d, ok
}

func (e *Engine) ctSweepLocked(now time.Time, budget int) int {
	n := len(e.gone)
	swept := e.table.Sweep(now, budget, &e.gone)
	e.releaseLocked(e.gone[n:])
	return swept
}

func (e *Engine) ctDestroyLocked(refs []conntrack.Ref, why conntrack.Reason, now time.Time) int {
	n := len(e.gone)
	done := e.table.Destroy(refs, why, now, &e.gone)
	e.releaseLocked(e.gone[n:])
	return done
}

// releaseLocked frees the per-source counts and NAT mappings of destroyed entries.
func (e *Engine) releaseLocked(gone []conntrack.Destroyed) {
	for i := range gone {
		ent := &gone[i].Entry
		if src, ok := e.counted[ent.Orig]; ok {
			delete(e.counted, ent.Orig)
			if e.perSource[src]--; e.perSource[src] <= 0 {
				delete(e.perSource, src)
			}
		}
		if ent.Reply != ent.Orig.Reply() {
			e.nat.unbind(ent.Orig, ent.Reply)
		}
	}
}

// endIntoLocked ends the entries in e.gone into a packet's result: their RSTs are
// injected after the packet's own answer, if there is room (maxInject).
func (e *Engine) endIntoLocked(res *Result) {
	for i := range e.gone {
		for _, inj := range e.endLocked(&e.gone[i]) {
			res.add(inj.To, inj.Packet)
		}
	}
	e.gone = e.gone[:0]
}

// endAllLocked ends the entries in e.gone, appending copies of their RSTs to out.
func (e *Engine) endAllLocked(out []Injected) []Injected {
	for i := range e.gone {
		for _, inj := range e.endLocked(&e.gone[i]) {
			out = append(out, Injected{To: inj.To, Packet: bytes.Clone(inj.Packet)})
		}
	}
	e.gone = e.gone[:0]
	return out
}

// endLocked publishes d's DESTROY event and returns the RSTs reset_on_expire sends
// for it, built in e.rstBufs: valid until the next call.
func (e *Engine) endLocked(d *conntrack.Destroyed) []Injected {
	if e.subs.active() {
		ev := Event{Event: d.Event()}
		e.subs.publish(&ev)
	}
	if !e.pol.ResetOnExpire || d.Reason != conntrack.ReasonExpired || d.Proto != packet.ProtoTCP ||
		d.State != conntrack.TCPEstablished {
		return nil
	}
	return e.expiryResets(&d.Entry)
}

// expiryResets builds the two RSTs that end an expired connection at both ends. Each
// carries exactly the sequence number its receiver expects next (RFC 5961) and
// acknowledges what the receiver sent last.
func (e *Engine) expiryResets(ent *conntrack.Entry) []Injected {
	out := e.rst[:0]
	o, r := ent.Orig, ent.Reply
	origSide := Outside
	if ent.OrigInside {
		origSide = Inside
	}
	// To the original sender, from its peer as it sees it (orig.Dst).
	if seq, ok := ent.RcvNxt(conntrack.Original); ok {
		if b, err := packet.BuildRST(e.rstBufs[0][:], netip.AddrPortFrom(o.DstAddr(), o.DstPort),
			netip.AddrPortFrom(o.SrcAddr(), o.SrcPort), seq, ent.NextSeq[conntrack.Original], ent.SeqKnown[conntrack.Original]); err == nil {
			out = append(out, Injected{To: origSide, Packet: b})
		}
	}
	// To the reply sender, from the original sender as it sees it (reply.Dst).
	if seq, ok := ent.RcvNxt(conntrack.Reply); ok {
		if b, err := packet.BuildRST(e.rstBufs[1][:], netip.AddrPortFrom(r.DstAddr(), r.DstPort),
			netip.AddrPortFrom(r.SrcAddr(), r.SrcPort), seq, ent.NextSeq[conntrack.Reply], ent.SeqKnown[conntrack.Reply]); err == nil {
			out = append(out, Injected{To: 1 - origSide, Packet: b})
		}
	}
	return out
}
