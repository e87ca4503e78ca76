package conntrack

import (
	"fmt"
	"strconv"
	"strings"
)

// TCPState is the state of a TCP entry, named and numbered as Linux
// nf_conntrack names them (enum tcp_conntrack). UDP, ICMP and other
// protocols stay in TCPNone.
type TCPState uint8

const (
	TCPNone        TCPState = iota // NONE: not TCP, or nothing seen yet
	TCPSynSent                     // SYN_SENT: SYN seen in the original direction
	TCPSynRecv                     // SYN_RECV: SYN-ACK seen
	TCPEstablished                 // ESTABLISHED: the handshake's ACK seen (or picked up mid-stream)
	TCPFinWait                     // FIN_WAIT: a FIN seen
	TCPCloseWait                   // CLOSE_WAIT: an ACK seen after a FIN
	TCPLastAck                     // LAST_ACK: FINs seen from both sides
	TCPTimeWait                    // TIME_WAIT: the last ACK seen
	TCPClose                       // CLOSE: an RST seen
	TCPSynSent2                    // SYN_SENT2: SYN seen from the reply direction too (simultaneous open)

	// NumTCPStates is the number of TCP states, the length of Timeouts.TCP.
	NumTCPStates = 10
)

var tcpStateNames = [NumTCPStates]string{
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
}

// String returns the Linux name of the state: "NONE", "SYN_SENT", ..., "SYN_SENT2".
func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "TCPState(" + strconv.Itoa(int(s)) + ")"
}

// ParseTCPState parses a Linux state name, in either case ("ESTABLISHED",
// "time_wait").
func ParseTCPState(s string) (TCPState, error) {
	for i, n := range tcpStateNames {
		if strings.EqualFold(s, n) {
			return TCPState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q: want one of %s", s, strings.Join(tcpStateNames[:], ", "))
}

// closing reports whether s is a teardown state; Linux's tcp_can_early_drop
// lets early drop pick such entries even when they are assured.
func (s TCPState) closing() bool {
	switch s {
	case TCPFinWait, TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose:
		return true
	}
	return false
}

// TCP header flags, as in the 14th byte of the header.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
)

// Segment classes, the middle index of tcpTransitions; the order of the
// tests in segmentClass is Linux's get_conntrack_index.
const (
	segSYN = iota
	segSYNACK
	segFIN
	segACK
	segRST
	segNone
	numSegClasses
)

// CanOpen reports whether a TCP segment with these flags may create an entry: a SYN
// without ACK always; a segment of the ACK class (ACK without SYN, FIN or RST) only
// as a mid-stream pickup (Linux's tcp_new with nf_conntrack_tcp_loose=1); never a
// combination ValidFlags refuses (SYN-FIN, say, which tcp_error calls invalid
// before tcp_new runs). Create applies exactly this rule, so a caller can ask before
// allocating anything.
func CanOpen(flags uint8, pickup bool) bool {
	if !ValidFlags(flags) {
		return false
	}
	switch segmentClass(flags) {
	case segSYN:
		return true
	case segACK:
		return pickup
	}
	return false
}

func segmentClass(flags uint8) int {
	switch {
	case flags&flagRST != 0:
		return segRST
	case flags&flagSYN != 0:
		if flags&flagACK != 0 {
			return segSYNACK
		}
		return segSYN
	case flags&flagFIN != 0:
		return segFIN
	case flags&flagACK != 0:
		return segACK
	}
	return segNone
}

// Pseudo-states in tcpTransitions.
const (
	tIV TCPState = 0xfe // invalid: the packet does not fit the state
	tIG TCPState = 0xff // ignored: let through, state kept, timer not restarted
)

// tcpTransitions[dir][segment class][old state] is the new state. The
// table is Linux's tcp_conntracks (net/netfilter/nf_conntrack_proto_tcp.c,
// which explains every cell), written out per row. Columns are in state
// order: NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT,
// LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
var tcpTransitions = func() (t [2][numSegClasses][NumTCPStates]TCPState) {
	const (
		no = TCPNone
		ss = TCPSynSent
		sr = TCPSynRecv
		es = TCPEstablished
		fw = TCPFinWait
		cw = TCPCloseWait
		la = TCPLastAck
		tw = TCPTimeWait
		cl = TCPClose
		s2 = TCPSynSent2
		iv = tIV
		ig = tIG
	)
	_ = no
	all := func(s TCPState) (r [NumTCPStates]TCPState) {
		for i := range r {
			r[i] = s
		}
		return r
	}
	// A SYN opens (or, from TIME_WAIT/CLOSE, reopens); a SYN from the
	// reply side of a SYN_SENT entry is a simultaneous open.
	t[Original][segSYN] = [NumTCPStates]TCPState{ss, ss, ig, ig, ig, ig, ig, ss, ss, s2}
	t[Reply][segSYN] = [NumTCPStates]TCPState{iv, s2, iv, iv, iv, iv, iv, ss, iv, s2}
	// SYN-ACK answers a SYN.
	t[Original][segSYNACK] = [NumTCPStates]TCPState{iv, iv, sr, iv, iv, iv, iv, iv, iv, sr}
	t[Reply][segSYNACK] = [NumTCPStates]TCPState{iv, sr, ig, ig, ig, ig, ig, ig, ig, sr}
	// FIN starts or continues the close, from either side.
	fin := [NumTCPStates]TCPState{iv, iv, fw, fw, la, la, la, tw, cl, iv}
	t[Original][segFIN] = fin
	t[Reply][segFIN] = fin
	// ACK completes the handshake and the close.
	t[Original][segACK] = [NumTCPStates]TCPState{es, iv, es, es, cw, cw, tw, tw, cl, iv}
	t[Reply][segACK] = [NumTCPStates]TCPState{iv, ig, sr, es, cw, cw, tw, tw, cl, ig}
	// RST closes anything that exists.
	rst := all(cl)
	rst[TCPNone] = iv
	t[Original][segRST] = rst
	t[Reply][segRST] = rst
	// No SYN, FIN, ACK or RST: never valid.
	t[Original][segNone] = all(iv)
	t[Reply][segNone] = all(iv)
	return t
}()

// Status is what Track or Create did with a packet.
type Status uint8

const (
	// Miss: no live entry has the packet's tuple (Track never creates).
	Miss Status = iota
	// Hit: the packet belongs to a live entry and was accounted.
	Hit
	// Created: Create made an entry for the packet. (Not "New": that is
	// the constructor.)
	Created
	// Full: Create made no entry because the table is full and the
	// OnFull policy (DropNew, or EarlyDrop without a victim) refused.
	Full
	// Invalid: the packet does not fit the state of its entry (Track),
	// for example an out-of-window RST or a SYN-FIN, or cannot open one
	// (Create), for example a bare ACK without pickup: what Linux's
	// conntrack calls ct state invalid. No state changed (but see
	// Linux's nf_tcp_handle_invalid in tcp.go).
	Invalid
	// Clash: Create made no entry because the reply tuple is already used
	// by another live entry (a NAT allocation that collides).
	Clash
)

var statusNames = [...]string{"miss", "hit", "created", "full", "invalid", "clash"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Reason says why an entry was destroyed.
type Reason uint8

const (
	// ReasonExpired: the idle timeout of a state other than TIME_WAIT and
	// CLOSE fired (ESTABLISHED, SYN_SENT, UDP, ICMP, ...).
	ReasonExpired Reason = iota
	// ReasonEvicted: the table was full and the entry was chosen to make
	// room (EvictLRU or EarlyDrop).
	ReasonEvicted
	// ReasonClosed: the TCP flow ended through its own teardown, TIME_WAIT
	// or CLOSE (after a FIN exchange or an RST) reaching its timeout, a new
	// SYN on the tuple, or an RST before any reply (Linux deletes such an
	// entry at once).
	ReasonClosed
	// ReasonFlushed: every entry was destroyed at once (a middlebox reboot).
	ReasonFlushed
	// ReasonDeleted: an operator deleted the entry (conntrack -D); the flow's
	// next packet finds none.
	ReasonDeleted

	// NumReasons is the number of reasons, the length of Stats.Destroyed.
	NumReasons = 5
)

var reasonNames = [NumReasons]string{"expired", "evicted", "closed", "flushed", "deleted"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// OnFull chooses what Create does when the table holds Capacity live entries.
// Expired entries are reclaimed first under every policy: they no longer count.
type OnFull uint8

const (
	// EvictLRU destroys the least recently active entry (reason evicted).
	EvictLRU OnFull = iota
	// DropNew creates nothing: Create returns Full.
	DropNew
	// EarlyDrop destroys the least recently active entry that Linux's
	// early_drop could pick: not assured (TCP before the handshake
	// completes, UDP and ICMP never replied) or TCP in a closing state
	// (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE). Without such an
	// entry Create returns Full, as Linux logs "table full, dropping packet".
	EarlyDrop

	// NumOnFull is the number of table-full policies.
	NumOnFull = 3
)

var onFullNames = [NumOnFull]string{"evict-lru", "drop-new", "early-drop"}

func (o OnFull) String() string {
	if int(o) < len(onFullNames) {
		return onFullNames[o]
	}
	return "onfull(" + strconv.Itoa(int(o)) + ")"
}

// ParseOnFull parses "evict-lru", "drop-new" or "early-drop".
func ParseOnFull(s string) (OnFull, error) {
	for i, n := range onFullNames {
		if s == n {
			return OnFull(i), nil
		}
	}
	return 0, fmt.Errorf("unknown on-full policy %q: want one of %s", s, strings.Join(onFullNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler.
func (o OnFull) MarshalText() ([]byte, error) {
	if int(o) >= len(onFullNames) {
		return nil, fmt.Errorf("invalid on-full policy %d", o)
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *OnFull) UnmarshalText(b []byte) error {
	v, err := ParseOnFull(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// Refresh chooses which packets restart an entry's idle timer and count as
// activity for LRU eviction. A packet that changes the entry's state (TCP
// state, or assured) restarts the timer under every rule.
type Refresh uint8

const (
	// RefreshAny: every packet of the flow, either direction (Linux, AWS NLB).
	RefreshAny Refresh = iota
	// RefreshInside: only packets that arrived from the inside (Packet.Inside).
	RefreshInside
	// RefreshData: only TCP segments that carry payload and are not
	// keepalive probes: keepalives do not keep the flow (AWS ALB). UDP,
	// ICMP and other packets always count as data.
	RefreshData
	// RefreshNoKeepalive: every packet except TCP keepalive probes and the
	// ACKs that answer them.
	RefreshNoKeepalive

	// NumRefresh is the number of refresh rules.
	NumRefresh = 4
)

var refreshNames = [NumRefresh]string{"any", "inside", "data", "no-keepalive"}

func (r Refresh) String() string {
	if int(r) < len(refreshNames) {
		return refreshNames[r]
	}
	return "refresh(" + strconv.Itoa(int(r)) + ")"
}

// ParseRefresh parses "any", "inside", "data" or "no-keepalive".
func ParseRefresh(s string) (Refresh, error) {
	for i, n := range refreshNames {
		if s == n {
			return Refresh(i), nil
		}
	}
	return 0, fmt.Errorf("unknown refresh rule %q: want one of %s", s, strings.Join(refreshNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler.
func (r Refresh) MarshalText() ([]byte, error) {
	if int(r) >= len(refreshNames) {
		return nil, fmt.Errorf("invalid refresh rule %d", r)
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Refresh) UnmarshalText(b []byte) error {
	v, err := ParseRefresh(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
