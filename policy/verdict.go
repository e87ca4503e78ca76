package policy

import (
	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/packet"
)

// Dir is the way a packet crosses the gateway.
type Dir uint8

const (
	// Outbound packets come from the inside (the client side) and go out.
	Outbound Dir = iota
	// Inbound packets come from the outside (the server side) toward the inside.
	Inbound
)

func (d Dir) String() string {
	if d == Outbound {
		return "outbound"
	}
	return "inbound"
}

// From is the side a packet of this direction arrives on.
func (d Dir) From() Side { return Side(d) }

// To is the side a packet of this direction leaves by.
func (d Dir) To() Side { return Side(1 - d) }

// Side names one of the gateway's two interfaces.
type Side uint8

const (
	Inside  Side = iota // toward the client namespace
	Outside             // toward the server namespace
)

func (s Side) String() string {
	if s == Inside {
		return "inside"
	}
	return "outside"
}

// Verdict is what happens to one packet.
type Verdict uint8

const (
	// Forward sends the (possibly rewritten) packet on.
	Forward Verdict = iota
	// Drop discards it silently.
	Drop
	// Reset discards it and sends a TCP RST back to its sender.
	Reset
	// Reject discards it and sends ICMP administratively prohibited back to its sender.
	Reject

	// NumVerdicts is the number of verdicts, the length of Stats.Verdicts.
	NumVerdicts = 4
)

var verdictNames = [NumVerdicts]string{"forward", "drop", "reset", "reject"}

func (v Verdict) String() string { return enumName(verdictNames[:], int(v)) }

// Reason says why a packet got its verdict. Every drop is counted under one.
type Reason uint8

const (
	ReasonTracked      Reason = iota // a packet of a live connection
	ReasonNew                        // it opened a new connection
	ReasonPickup                     // it opened a connection mid-stream (orphan: pickup)
	ReasonRelated                    // an ICMP error about a live connection
	ReasonInvalid                    // what Linux's conntrack calls invalid: forwarded untracked under invalid: accept, else dropped
	ReasonUntracked                  // a protocol the table does not track, forwarded as is
	ReasonOrphan                     // no live connection, and it may not open one
	ReasonTableFull                  // the table is full and on_full refused the new connection
	ReasonSourceLimit                // max_conns_per_source reached
	ReasonNATNoMapping               // toward the outside address, but no mapping
	ReasonNATFiltered                // a mapping exists but NAT filtering refuses this sender
	ReasonNATNoAddress               // NAT has no outside address of this IP family
	ReasonNATNoPorts                 // every outside port is in use
	ReasonMalformed                  // not a valid IP packet
	ReasonFragment                   // a later fragment of a datagram whose first fragment was not forwarded
	ReasonNotForwarded               // multicast, link-local or loopback: never crosses a router
	ReasonSpoofed                    // its source is not in the networks of the side it came from (route.go; source_check)
	ReasonNoRoute                    // its destination is neither in the other side's networks nor the NAT address (route.go)
	ReasonMartian                    // an address no router forwards: 0.0.0.0/8, a broadcast, the gateway's own as source (route.go)
	ReasonBadChecksum                // a wrong IPv4 header checksum (Linux ip_rcv drops it before routing)
	ReasonTTLExceeded                // its TTL / Hop Limit ran out: ICMP time exceeded sent back (decrement_ttl)

	// NumReasons is the number of reasons, the length of Stats.Reasons.
	NumReasons = 21
)

var reasonNames = [NumReasons]string{
	"tracked", "new", "pickup", "related", "invalid", "untracked", "orphan", "table-full",
	"source-limit", "nat-no-mapping", "nat-filtered", "nat-no-address", "nat-no-ports",
	"malformed", "fragment", "not-forwarded", "spoofed", "no-route", "martian", "bad-checksum",
	"ttl-exceeded",
}

func (r Reason) String() string { return enumName(reasonNames[:], int(r)) }

// maxInject is the most packets one Process call injects: a RST or ICMP answer to the
// packet plus the two RSTs of a reset_on_expire connection found expired by it.
const maxInject = 4

// injectSize fits an ICMPv6 error (RFC 4443: at most the minimum IPv6 MTU).
const injectSize = 1280

// Injected is a packet the gateway originates.
type Injected struct {
	To     Side
	Packet []byte
}

// Result is the outcome of one Process call. It owns the buffers of the injected
// packets; allocate one per goroutine and reuse it: its contents are valid until the
// next call that uses it.
type Result struct {
	Verdict Verdict
	Reason  Reason
	// Packet is the packet to forward when Verdict is Forward: the input slice,
	// rewritten in place under NAT, its TTL decremented (decrement_ttl).
	Packet []byte
	// Translated: NAT rewrote Packet's addresses or ports (the TTL decrement aside).
	Translated bool
	// Inject are packets to write, in order.
	Inject []Injected
	// Conn is the connection table's outcome (zero for untracked packets).
	Conn conntrack.Result
	// Info is the decoded packet (after any rewrite).
	Info packet.Info

	injects [maxInject]Injected
	bufs    [maxInject][injectSize]byte
}

func (r *Result) reset() {
	r.Verdict, r.Reason, r.Packet, r.Translated = Drop, ReasonMalformed, nil, false
	r.Inject = r.injects[:0]
	r.Conn = conntrack.Result{}
}

// add copies p into the next injection buffer.
func (r *Result) add(to Side, p []byte) {
	i := len(r.Inject)
	if i == maxInject || len(p) > injectSize {
		return
	}
	n := copy(r.bufs[i][:], p)
	r.Inject = append(r.Inject, Injected{To: to, Packet: r.bufs[i][:n]})
}

// Stats counts verdicts and reasons since the engine started.
type Stats struct {
	Verdicts [NumVerdicts]uint64 // packets per Verdict
	Reasons  [NumReasons]uint64  // packets per Reason
	// Bytes counts the bytes of the packets that arrived from each Side (as read,
	// before any rewrite), per Verdict.
	Bytes    [2][NumVerdicts]uint64
	Injected uint64
	Table    conntrack.Stats
	NATMaps  int
	// EventsDropped counts events lost to full subscriber buffers, all subscribers.
	EventsDropped uint64
}

// VerdictCounts gives each verdict's name with its count, for printing and metrics.
func (s *Stats) VerdictCounts() map[string]uint64 {
	m := make(map[string]uint64, len(s.Verdicts))
	for i, n := range s.Verdicts {
		m[Verdict(i).String()] = n
	}
	return m
}

// ReasonCounts gives each reason's name with its count.
func (s *Stats) ReasonCounts() map[string]uint64 {
	m := make(map[string]uint64, len(s.Reasons))
	for i, n := range s.Reasons {
		m[Reason(i).String()] = n
	}
	return m
}
