package conntrack

// TCP tracking after Linux's net/netfilter/nf_conntrack_proto_tcp.c: the
// flag check of tcp_error (ValidFlags), the state table (tcpTransitions) with
// the special cases of nf_conntrack_tcp_packet, the bookkeeping of
// tcp_in_window, and its choice of timeout. Where this file leaves out
// something Linux does, the comment says so.

type tcpAction uint8

const (
	tcpAccept  tcpAction = iota // in window: state updated, timer restarts per the rule
	tcpIgnore                   // let through, state kept, timer not restarted (Linux NF_ACCEPT before nf_ct_refresh)
	tcpInvalid                  // does not fit: Linux -NF_ACCEPT, conntrack state INVALID
	tcpReopen                   // a SYN on a closed entry: the old flow is over (Linux -NF_REPEAT)
	tcpKill                     // an RST before any reply: the entry goes at once (Linux nf_ct_kill_acct)
)

// after reports whether sequence number a is after b (RFC 1982 arithmetic).
func after(a, b uint32) bool { return int32(a-b) > 0 }

// before reports whether a is before b.
func before(a, b uint32) bool { return int32(a-b) < 0 }

// maxAckWindow is Linux's MAXACKWINCONST: the least distance below the
// receiver's highest sequence at which an ACK is still taken as current.
const maxAckWindow = 66000

// maxWScale is the largest window scale shift (RFC 7323 2.3; Linux
// TCP_MAX_WSCALE): tcp_options clamps larger ones.
const maxWScale = 14

// validFlags is Linux's tcp_valid_flags: the combinations of FIN, SYN, RST,
// ACK and URG a segment may carry (PSH, ECE and CWR are always allowed).
var validFlags = func() (v [256]bool) { // 256: the index needs no bounds check
	for _, f := range []uint8{
		flagSYN, flagSYN | flagURG, flagSYN | flagACK,
		flagRST, flagRST | flagACK,
		flagFIN | flagACK, flagFIN | flagACK | flagURG,
		flagACK, flagACK | flagURG,
	} {
		v[f] = true
	}
	return v
}()

// ValidFlags reports whether Linux's tcp_error accepts a TCP flags byte: one
// of SYN, SYN-ACK, RST, RST-ACK, FIN-ACK and ACK (with or without URG where
// Linux allows it, with any of PSH, ECE and CWR). SYN-FIN, SYN-RST, FIN
// without ACK and a segment without flags are invalid: such a segment never
// opens an entry and never changes one.
func ValidFlags(flags uint8) bool { return validFlags[flags&^(flagPSH|flagECE|flagCWR)] }

// segEnd is the sequence number after the segment: seq + payload, plus one
// for SYN and one for FIN (Linux segment_seq_plus_len).
func segEnd(p *Packet) uint32 {
	end := p.Seq + uint32(p.PayloadLen)
	if p.TCPFlags&flagSYN != 0 {
		end++
	}
	if p.TCPFlags&flagFIN != 0 {
		end++
	}
	return end
}

// effWindow is the window d last advertised, in bytes: the field shifted by
// d's window scale, except on a SYN, whose window is never scaled (RFC 7323
// 2.2; tcp_in_window), and at least 1 (Linux keeps td_maxwin >= 1).
func effWindow(r *record, d Dir) uint32 {
	w := uint32(r.window[d])
	if r.flags2&synWinBit(d) == 0 {
		w <<= r.scaleOf(d)
	}
	return max(w, 1)
}

// tcpNewLocked initialises the sequence tracking of a new entry from the
// packet that creates it, as Linux's tcp_new does: a SYN sets the sender's
// end, window and options; a picked-up segment sets the sender's end and
// window and makes the window checks liberal for the flow's life
// (IP_CT_TCP_FLAG_BE_LIBERAL), its history being unknown.
func tcpNewLocked(r *record, p *Packet, pickup bool) {
	r.setLast(Original, segNone) // last_index = TCP_NONE_SET
	if !pickup {
		tcpInitSender(r, Original, p, segEnd(p))
		return
	}
	r.nextSeq[Original] = segEnd(p)
	r.flags |= rfSeqKnown0
	r.window[Original] = p.Window
	r.flags2 |= rf2Liberal
}

// tcpInitSender is Linux's tcp_init_sender (and tcp_options): a SYN or
// SYN-ACK from d sets d's end and window and its window scale option. Window
// scaling is on only if both SYNs carry the option (RFC 7323 2.2), so at the
// reply's SYN-ACK both shifts are cleared unless both sent one.
func tcpInitSender(r *record, d Dir, p *Packet, end uint32) {
	r.nextSeq[d] = end
	r.flags |= seqKnownBit(d)
	r.window[d] = p.Window
	r.flags2 |= synWinBit(d)
	// tcp_options resets td_scale and every flag but BE_LIBERAL.
	r.flags &^= ackKnownBit(d)
	r.flags3 &^= unackedBit(d) | closeInitBit(d) | wscaleBit(d)
	r.setScale(d, 0)
	if p.HasWScale {
		r.setScale(d, min(p.WScale, maxWScale))
		r.flags3 |= wscaleBit(d)
	}
	if d == Reply && r.flags3&(rf3WScale0|rf3WScale1) != rf3WScale0|rf3WScale1 {
		r.setScale(Original, 0)
		r.setScale(Reply, 0)
	}
}

// tcpVerdict is what tcpLocked made of a segment, packed in a byte (a struct
// of five fields made the hot path measurably slower): the action; for
// tcpAccept and tcpKill the timeout class its refresh takes; for tcpInvalid
// whether nf_tcp_handle_invalid shortens the timeout (shrink); whether the
// segment is a keepalive probe or the answer to one. The zero value is
// tcpAccept with the state's timeout.
type tcpVerdict uint8

const (
	tvActMask    = 7 // bits 0-2: the tcpAction
	tvClassShift = 3 // bits 3-4: the timeoutClass
	tvShrink     = 1 << 5
	tvKeepalive  = 1 << 6
	tvKeepAck    = 1 << 7
)

func verdict(a tcpAction) tcpVerdict { return tcpVerdict(a) }

func (v tcpVerdict) act() tcpAction      { return tcpAction(v & tvActMask) }
func (v tcpVerdict) class() timeoutClass { return timeoutClass(v>>tvClassShift) & 3 }
func (v tcpVerdict) shrink() bool        { return v&tvShrink != 0 }
func (v tcpVerdict) keepalive() bool     { return v&tvKeepalive != 0 }
func (v tcpVerdict) keepaliveAck() bool  { return v&tvKeepAck != 0 }
func (v tcpVerdict) withAct(a tcpAction) tcpVerdict {
	return v&^tvActMask | tcpVerdict(a)
}
func (v tcpVerdict) withClass(c timeoutClass) tcpVerdict {
	return v&^(3<<tvClassShift) | tcpVerdict(c)<<tvClassShift
}

// tcpLocked runs one segment from dir through r's state machine, as Linux's
// nf_conntrack_tcp_packet does. On tcpInvalid the entry's state is as it was
// (but see shrink). The caller marks the entry replied (IPS_SEEN_REPLY) after
// the call, as Linux's nf_conntrack_in does after the protocol's handler.
//
// A segment of the ACK class (data, a bare ACK, a keepalive) on an assured
// ESTABLISHED entry whose sender is known, nearly every packet, takes
// tcpEstablishedLocked, which does what tcpSlowLocked would do for it and no
// more; a test runs both on the same traffic.
func (t *Table) tcpLocked(r *record, dir Dir, p *Packet) tcpVerdict {
	if r.state == TCPEstablished && p.TCPFlags&^(flagPSH|flagECE|flagCWR) == flagACK && fastPath &&
		r.flags&(rfAssured|seqKnownBit(dir)) == rfAssured|seqKnownBit(dir) && r.flags2&rf2Replied != 0 {
		return t.tcpEstablishedLocked(r, dir, p)
	}
	return t.tcpSlowLocked(r, dir, p)
}

// fastPath lets a test turn tcpEstablishedLocked off to compare it with the
// general path.
var fastPath = true

// tcpEstablishedLocked is tcpSlowLocked for an ACK-class segment (ACK set; no
// SYN, FIN, RST or URG) on an assured ESTABLISHED entry whose sender is known:
// no transition, no window check (only RSTs are checked), only the
// bookkeeping of an in-window segment.
func (t *Table) tcpEstablishedLocked(r *record, dir Dir, p *Packet) tcpVerdict {
	var v tcpVerdict
	probe := isProbe(r, dir, p)
	if probe {
		v |= tvKeepalive
	} else if isProbeAnswer(r, dir, p) {
		v |= tvKeepAck
	}
	// tcpAdvance for a segment with ACK and without SYN or FIN, spelled out so
	// that the common path pays for no call and no test it knows the answer to.
	rcv := 1 - dir
	if end := p.Seq + uint32(p.PayloadLen); after(end, r.nextSeq[dir]) {
		r.nextSeq[dir] = end
		r.flags3 |= unackedBit(dir)
	}
	if r.flags&ackKnownBit(dir) == 0 || after(p.Ack, r.lastAck[dir]) {
		r.lastAck[dir] = p.Ack
		r.flags |= ackKnownBit(dir)
	}
	if p.Ack == r.nextSeq[rcv] && r.flags3&unackedBit(rcv) != 0 {
		r.flags3 &^= unackedBit(rcv)
	}
	r.window[dir] = p.Window
	if r.flags2&synWinBit(dir) != 0 {
		r.flags2 &^= synWinBit(dir)
	}
	if end := p.Seq + uint32(p.PayloadLen); r.lastDir() == dir && r.lastSeq == p.Seq && r.lastAckSeen == p.Ack &&
		r.lastEnd == end && r.lastWin == p.Window {
		if r.retrans < 255 {
			r.retrans++
		}
	} else {
		r.lastSeq, r.lastAckSeen, r.lastEnd, r.lastWin = p.Seq, p.Ack, end, p.Window
		r.retrans = 0
	}
	r.setLast(dir, segACK)
	if probe {
		r.flags |= probeBit(dir)
	} else {
		r.flags &^= probeBit(dir)
	}
	r.flags &^= probeBit(1 - dir)
	return v.withClass(t.tcpTimeoutLocked(r, TCPEstablished, segACK))
}

// tcpSlowLocked is tcpLocked for every segment.
func (t *Table) tcpSlowLocked(r *record, dir Dir, p *Packet) tcpVerdict {
	if !ValidFlags(p.TCPFlags) {
		return verdict(tcpInvalid) // tcp_error: "invalid tcp flag combination"
	}
	index := segmentClass(p.TCPFlags)
	old := r.state
	next := tcpTransitions[dir][index][old]
	checkWindow := true
	switch next {
	case TCPSynSent:
		if old < TCPTimeWait {
			break
		}
		// RFC 1122 4.2.2.13: a SYN may reopen a connection in TIME_WAIT;
		// Linux also lets it replace a connection that saw a FIN, or one the
		// same side aborted with an RST. Any other is ignored.
		if r.flags3&(rf3CloseInit0|rf3CloseInit1) != 0 || r.lastDir() == dir && r.lastIndex() == segRST {
			return verdict(tcpReopen)
		}
		return verdict(tcpIgnoreLocked(r, dir, index, p, old))
	case tIG:
		if index == segSYNACK && r.lastIndex() == segSYN && r.lastDir() != dir && p.Ack == r.lastEnd {
			// The SYN-ACK acknowledges a SYN ignored earlier: both ends are in
			// sync and we are not; take up the new connection from the SYN.
			tcpResyncLocked(r, dir)
			old, next = TCPSynSent, TCPSynRecv
			break
		}
		return verdict(tcpIgnoreLocked(r, dir, index, p, old))
	case tIV:
		return verdict(tcpInvalid)
	case TCPTimeWait:
		// RFC 5961 3.2: an ACK answering an ignored SYN in LAST_ACK is a
		// challenge ACK, not the last ACK of the close.
		if old == TCPLastAck && index == segACK && r.lastDir() != dir && r.lastIndex() == segSYN &&
			r.flags2&rf2Challenge != 0 {
			r.flags2 &^= rf2Challenge
			return verdict(tcpIgnore)
		}
	case TCPSynSent2:
		r.flags2 |= rf2SimOpen
	case TCPSynRecv:
		if dir == Reply && index == segACK && r.flags2&rf2SimOpen != 0 {
			// The reply side's ACK completes a simultaneous open.
			next = TCPEstablished
		}
	case TCPClose:
		if index != segRST {
			break
		}
		keep, skip, invalid := tcpRSTLocked(r, dir, p, old)
		if invalid {
			return verdict(tcpInvalid)
		}
		if keep {
			next = old
		}
		checkWindow = !skip
	}

	// Keepalives are judged against the state before this segment.
	probe, probeAnswer := isProbe(r, dir, p), isProbeAnswer(r, dir, p)
	if checkWindow {
		// tcp_in_window reads the state the entry is in, not the resynchronised old.
		switch a := tcpInWindowLocked(r, dir, index, p, r.state); a {
		case tcpIgnore:
			return verdict(tcpIgnore)
		case tcpInvalid:
			v := verdict(tcpInvalid)
			if tcpHandleInvalid(r, dir, index) {
				v |= tvShrink
			}
			return v
		}
	}

	// In window.
	var v tcpVerdict
	r.setLast(dir, index)
	if probe {
		v |= tvKeepalive
		r.flags |= probeBit(dir)
	} else {
		r.flags &^= probeBit(dir)
		if probeAnswer {
			v |= tvKeepAck
		}
	}
	r.flags &^= probeBit(1 - dir)
	r.state = next
	if old != next && next == TCPFinWait {
		r.flags3 |= closeInitBit(dir)
	}
	v = v.withClass(t.tcpTimeoutLocked(r, next, index))
	if r.flags2&rf2Replied == 0 {
		if index == segRST {
			// "If only reply is a RST, we can consider ourselves not to have
			// an established connection: delete the conntrack immediately."
			return v.withAct(tcpKill)
		}
		if index == segSYN && old == TCPSynSent {
			// A retransmitted SYN does not restart the timer, so that port
			// reuse cannot keep an unanswered entry alive.
			return v.withAct(tcpIgnore)
		}
		if next == TCPEstablished && t.cfg.Timeouts.timeout(ProtoTCP, next, v.class(), false) > t.cfg.Timeouts.TCPUnacknowledged {
			// A pickup nobody has answered yet: not the ESTABLISHED timeout.
			v = v.withClass(classUnack)
		}
	} else if r.flags&rfAssured == 0 && (old == TCPSynRecv || old == TCPEstablished) && next == TCPEstablished {
		// ASSURED on a valid segment in ESTABLISHED after SYN_RECV, or on the
		// first segment after a picked-up flow's answer.
		r.flags |= rfAssured
	}
	return v
}

// tcpTimeoutLocked is the timeout Linux's nf_conntrack_tcp_packet gives an
// in-window segment of class index that left r in state st: max_retrans's
// after tcp_max_retrans repeats, CLOSE's after an RST, unacknowledged's while
// data is in flight, max_retrans's after a zero window, else the state's; a
// cap applies only when shorter than the state's.
func (t *Table) tcpTimeoutLocked(r *record, st TCPState, index int) timeoutClass {
	to := &t.cfg.Timeouts
	d := to.TCP[st]
	switch {
	case int(r.retrans) >= t.cfg.MaxRetrans && d > to.TCPMaxRetrans:
		return classRetrans
	case index == segRST:
		return classClose
	case r.flags3&(rf3Unacked0|rf3Unacked1) != 0 && d > to.TCPUnacknowledged:
		return classUnack
	case r.lastWin == 0 && d > to.TCPMaxRetrans:
		return classRetrans
	}
	return classState
}

// tcpIgnoreLocked lets a segment through without changing the state or the
// timer, noting it (last_*) so that an answer can tell whether the ends are in
// sync while the table is not: a SYN-ACK acknowledging an ignored SYN takes the
// new connection up (tcpResyncLocked), an RST answering it ends the entry.
func tcpIgnoreLocked(r *record, dir Dir, index int, p *Packet, old TCPState) tcpAction {
	r.setLast(dir, index)
	r.lastSeq = p.Seq
	r.lastEnd = segEnd(p)
	r.lastWin = p.Window
	if index == segSYN && dir == Original {
		// last_flags = last_wscale = 0, then the SYN's options.
		r.flags2 &^= rf2LastWScale | rf2Challenge | rf2SimOpen
		r.setLastWScale(0)
		if p.HasWScale {
			r.flags2 |= rf2LastWScale
			r.setLastWScale(min(p.WScale, maxWScale))
		}
		if old == TCPLastAck {
			// RFC 5961: the peer may answer with a challenge ACK, which in
			// LAST_ACK would look like the last ACK.
			r.flags2 |= rf2Challenge
		}
	}
	if old == TCPSynSent && index == segACK && dir == Reply {
		// Possibly a challenge ACK answering the SYN: an RST with this
		// sequence number would follow.
		r.lastAckSeen = p.Ack
	}
	return tcpIgnore
}

// tcpResyncLocked takes up the connection of an ignored SYN (from the other
// direction than dir) whose SYN-ACK dir now sends: the SYN's sender is set from
// what was noted of it, dir's tracking starts afresh.
func tcpResyncLocked(r *record, dir Dir) {
	ld := r.lastDir()
	r.nextSeq[ld] = r.lastEnd
	r.flags |= seqKnownBit(ld)
	r.window[ld] = r.lastWin
	r.flags2 |= synWinBit(ld)
	r.setScale(ld, r.lastWScale())
	r.flags2 &^= rf2Challenge
	r.flags &^= ackKnownBit(ld)
	r.flags3 &^= unackedBit(ld) | closeInitBit(ld) | wscaleBit(ld)
	if r.flags2&rf2LastWScale != 0 {
		r.flags3 |= wscaleBit(ld)
	}
	// nf_ct_tcp_state_reset of dir.
	r.nextSeq[dir], r.lastAck[dir], r.window[dir] = 0, 0, 0
	r.flags &^= seqKnownBit(dir) | ackKnownBit(dir)
	r.flags3 &^= unackedBit(dir) | closeInitBit(dir) | wscaleBit(dir)
	r.setScale(dir, 0)
}

// tcpRSTLocked judges an RST before the window check, as the TCP_CONNTRACK_CLOSE
// case of nf_conntrack_tcp_packet does. In a closing state any RST ends the
// entry (skip). Once the receiver has acknowledged something, an RST below
// its highest ack is invalid; on an ESTABLISHED, assured entry only the
// exact one (seq = that ack), or one that follows the sender's last data
// segment (an RST train), closes it: any other in-window RST keeps the state
// (keep), for the receiver answers it with a challenge ACK (RFC 5961 3.2). An
// RST that answers a SYN or ACK the table let through ends the entry without
// a window check (skip).
func tcpRSTLocked(r *record, dir Dir, p *Packet, old TCPState) (keep, skip, invalid bool) {
	if old.closing() {
		return false, true, false
	}
	rcv := 1 - dir
	assured := r.flags&rfAssured != 0
	established := old == TCPEstablished && assured
	if r.flags&ackKnownBit(rcv) != 0 && r.lastIndex() != segSYN {
		maxAck := r.lastAck[rcv]
		switch seq := p.Seq; {
		case seq == 0 && !established:
			// Most likely an answer to a SYN let through: to the window check.
			return false, false, false
		case before(seq, maxAck):
			return false, false, true // "invalid rst" (nf_conntrack_tcp_ignore_invalid_rst = 0)
		case !established || seq == maxAck:
			return false, false, false
		case r.lastIndex() == segACK && r.lastDir() == dir && seq == r.lastEnd:
			// An RST right after the sender's own data (an RST train).
			return false, false, false
		}
		keep = true
	}
	replied := r.flags2&rf2Replied != 0
	if (replied && r.lastIndex() == segSYN || !assured && r.lastIndex() == segACK) && p.Ack == r.lastEnd {
		// An RST answering an invalid SYN or ACK let through: end the entry,
		// whatever the window says (the segment it answers was ignored).
		return keep, true, false
	}
	if old == TCPSynSent && r.lastIndex() == segACK && r.lastDir() == Reply && p.Seq == r.lastAckSeen {
		// The RST answering a challenge ACK let through earlier.
		return keep, true, false
	}
	return keep, false, false
}

// tcpInWindowLocked is Linux's tcp_in_window for one segment of class index
// from dir, in state old: it initialises the sender at its first segment,
// checks an RST against the windows, and on acceptance records what the
// segment tells: the sender's end (marking data unacknowledged), its highest
// ack (clearing the receiver's unacknowledged mark when it covers the
// receiver's end), its window, and repeats of the last ACK-class segment
// (retrans). The windows are the last ones advertised, scaled: Linux keeps
// the largest (td_maxwin, td_maxend), which differs only after a window
// shrinks. Segments other than RSTs are not window-checked: Linux also marks
// data and ACKs beyond the windows invalid, or ignores them.
func tcpInWindowLocked(r *record, dir Dir, index int, p *Packet, old TCPState) tcpAction {
	snd, rcv := dir, 1-dir
	seq, ack, end := p.Seq, p.Ack, segEnd(p)
	syn := p.TCPFlags&flagSYN != 0
	hasAck := p.TCPFlags&flagACK != 0
	isRST := index == segRST

	if r.flags&seqKnownBit(snd) == 0 {
		if syn {
			tcpInitSender(r, snd, p, end)
			if !hasAck {
				return tcpAccept // simultaneous open
			}
		} else {
			// The sender's first segment is not a SYN: a pickup, or an answer
			// whose SYN-ACK we never saw. Start from the segment.
			r.nextSeq[snd] = end
			r.flags |= seqKnownBit(snd)
			r.window[snd] = p.Window
			r.flags2 &^= synWinBit(snd)
			if r.flags&seqKnownBit(rcv) != 0 && ack == r.nextSeq[rcv]+1 {
				r.nextSeq[rcv]++ // likely the answer to a keepalive
			}
		}
	} else if syn && after(end, r.nextSeq[snd]) && (old == TCPSynSent || old == TCPSynRecv) {
		// RFC 793: a reinitialised TCP uses larger sequence numbers; take its
		// new SYN (or SYN-ACK) as the start.
		tcpInitSender(r, snd, p, end)
		if dir == Reply && !hasAck {
			return tcpAccept
		}
	}
	if !hasAck || isRST && ack == 0 {
		// No ACK (or an RST with a zero one, from broken stacks): take it as
		// acknowledging what the receiver sent.
		ack = r.nextSeq[rcv]
	}
	if isRST && seq == 0 && old == TCPSynSent {
		seq, end = r.nextSeq[snd], r.nextSeq[snd] // the RST answering a SYN
	}
	if isRST && r.flags2&rf2Liberal == 0 {
		if a := rstInWindow(r, snd, seq, ack, end); a != tcpAccept {
			return a
		}
	}

	tcpAdvance(r, dir, index, p, seq, ack, end)
	return tcpAccept
}

// tcpAdvance records what an in-window segment of class index from snd tells
// (seq, ack and end as tcp_in_window takes them): the sender's end, marking
// data unacknowledged when it grows; its highest ack, clearing the receiver's
// mark when it covers the receiver's end; its window; and whether it repeats
// the last ACK-class segment (retrans).
func tcpAdvance(r *record, snd Dir, index int, p *Packet, seq, ack, end uint32) {
	rcv := 1 - snd
	if after(end, r.nextSeq[snd]) {
		r.nextSeq[snd] = end
		r.flags3 |= unackedBit(snd)
	}
	if p.TCPFlags&flagACK != 0 {
		if r.flags&ackKnownBit(snd) == 0 || after(ack, r.lastAck[snd]) {
			r.lastAck[snd] = ack
			r.flags |= ackKnownBit(snd)
		}
	}
	if ack == r.nextSeq[rcv] && r.flags3&unackedBit(rcv) != 0 {
		r.flags3 &^= unackedBit(rcv)
	}
	r.window[snd] = p.Window
	if p.TCPFlags&flagSYN != 0 {
		r.flags2 |= synWinBit(snd)
	} else if r.flags2&synWinBit(snd) != 0 {
		r.flags2 &^= synWinBit(snd)
	}
	if index == segACK {
		// A retransmission repeats the last segment exactly.
		if r.lastDir() == snd && r.lastSeq == seq && r.lastAckSeen == ack && r.lastEnd == end && r.lastWin == p.Window {
			if r.retrans < 255 {
				r.retrans++
			}
		} else {
			r.setLast(snd, index)
			r.lastSeq, r.lastAckSeen, r.lastEnd, r.lastWin = seq, ack, end, p.Window
			r.retrans = 0
		}
	}
}

// rstInWindow checks an RST from snd with sequence seq (end after it) and
// acknowledgment ack against tcp_in_window's four bounds: I, seq at most the
// right edge of the receiver's window (its highest ack plus its scaled window);
// II, end above the sender's end less the receiver's window; III, ack at most
// what the receiver sent; IV, ack no more than 66000 bytes (or the sender's
// window) below it. I and III failing make the RST invalid, unless it only
// overshoots the window by less than a window (then, and when II or IV fail,
// it is ignored).
func rstInWindow(r *record, snd Dir, seq, ack, end uint32) tcpAction {
	rcv := 1 - snd
	rcvKnown := r.flags&seqKnownBit(rcv) != 0
	rcvWin := effWindow(r, rcv)
	inRecvWin := !rcvKnown || after(end, r.nextSeq[snd]-rcvWin-1)
	ackLow := after(ack, r.nextSeq[rcv]-max(maxAckWindow, effWindow(r, snd))-1)
	ackHigh := !after(ack, r.nextSeq[rcv])
	if r.flags&ackKnownBit(rcv) != 0 {
		maxEnd := r.lastAck[rcv] + effWindow(r, rcv)
		if r.window[rcv] == 0 {
			maxEnd++
		}
		if after(seq, maxEnd) {
			overshot := end - maxEnd + 1
			if rcvKnown && inRecvWin && ackLow && overshot <= rcvWin && ackHigh {
				return tcpIgnore // "bytes more than expected"
			}
			return tcpInvalid // "SEQ is over upper bound (over the window of the receiver)"
		}
	}
	switch {
	case !ackHigh:
		return tcpInvalid // "ACK is over upper bound (ACKed data not seen yet)"
	case !inRecvWin:
		return tcpIgnore // "SEQ is under lower bound (already ACKed data retransmitted)"
	case !ackLow:
		return tcpIgnore // "ignored ACK under lower bound (possible overly delayed)"
	}
	return tcpAccept
}

// tcpHandleInvalid is Linux's nf_tcp_handle_invalid for an out-of-window RST:
// on an assured entry whose peer's last segment was a FIN or an RST it asks for
// the unacknowledged timeout (the caller applies it if that is shorter and the
// entry has at least 120 s left), so that a connection whose ends and table
// disagree does not linger; otherwise it notes the segment.
func tcpHandleInvalid(r *record, dir Dir, index int) (shrink bool) {
	if r.flags&rfAssured == 0 || index != segRST && index != segFIN {
		return false
	}
	if r.lastDir() != dir && (r.lastIndex() == segFIN || r.lastIndex() == segRST) {
		return true
	}
	r.setLast(dir, index)
	return false
}

// isProbe reports whether p is a keepalive probe from dir: ACK only, 0 or 1
// byte, seq one before the highest seq+len dir has sent, and (when known)
// everything dir sent acknowledged by its peer, which tells a probe from a
// retransmitted 1-byte segment.
func isProbe(r *record, dir Dir, p *Packet) bool {
	if p.TCPFlags&^(flagECE|flagCWR) != flagACK || p.PayloadLen > 1 || r.flags&seqKnownBit(dir) == 0 {
		return false
	}
	if p.Seq != r.nextSeq[dir]-1 {
		return false
	}
	peer := 1 - dir
	return r.flags&ackKnownBit(peer) == 0 || r.lastAck[peer] == r.nextSeq[dir]
}

// isProbeAnswer reports whether p is the bare ACK with which dir answers a
// keepalive probe from its peer.
func isProbeAnswer(r *record, dir Dir, p *Packet) bool {
	peer := 1 - dir
	return r.flags&probeBit(peer) != 0 && p.TCPFlags&^(flagECE|flagCWR) == flagACK &&
		p.PayloadLen == 0 && p.Ack == r.nextSeq[peer]
}
