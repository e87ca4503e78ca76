package conntrack

// TCP tracking: Linux's state table (tcpTransitions), sequence tracking per
// direction, RST window check and keepalive recognition.

type tcpAction uint8

const (
	tcpAccept  tcpAction = iota // state machine ran, timer restarts per the rule
	tcpIgnore                   // let through unchanged, timer not restarted (Linux sIG)
	tcpInvalid                  // does not fit: nothing changes
	tcpReopen                   // a SYN on a closed entry: the old flow is over
)

// after reports whether sequence number a is after b (RFC 1982 arithmetic).
func after(a, b uint32) bool { return int32(a-b) > 0 }

// segEnd is the sequence number after the segment: seq + payload, plus one
// for SYN and one for FIN.
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

// tcpInitLocked starts sequence tracking from the packet that created r.
func (t *Table) tcpInitLocked(r *record, p *Packet) {
	t.tcpLearnLocked(r, Original, p)
}

// tcpLearnLocked records what a valid, non-RST segment from dir tells about
// that side's sequence space.
func (t *Table) tcpLearnLocked(r *record, dir Dir, p *Packet) {
	if end := segEnd(p); r.flags&seqKnownBit(dir) == 0 || after(end, r.nextSeq[dir]) {
		r.nextSeq[dir] = end
		r.flags |= seqKnownBit(dir)
	}
	if p.TCPFlags&flagACK != 0 {
		if r.flags&ackKnownBit(dir) == 0 || after(p.Ack, r.lastAck[dir]) {
			r.lastAck[dir] = p.Ack
			r.flags |= ackKnownBit(dir)
		}
	}
	r.window[dir] = p.Window
}

// tcpLocked runs one segment from dir through r's state machine. It sets
// res.Keepalive and res.KeepaliveAck; on tcpInvalid nothing in r changed.
func (t *Table) tcpLocked(r *record, dir Dir, p *Packet, res *Result) tcpAction {
	cls := segmentClass(p.TCPFlags)
	old := r.state
	next := tcpTransitions[dir][cls][old]
	switch next {
	case tIV:
		return tcpInvalid
	case tIG:
		return tcpIgnore
	}
	if cls == segRST {
		if !rstInWindow(r, dir, p) {
			return tcpInvalid
		}
		r.state = next
		r.flags &^= rfProbe0 | rfProbe1
		return tcpAccept
	}
	if next == TCPSynSent && old >= TCPTimeWait {
		// A SYN on a TIME_WAIT or CLOSE entry opens a new connection on
		// the tuple (RFC 1122 4.2.2.13), possibly from the other side: as
		// Linux does, the old entry goes and the SYN makes a new one.
		return tcpReopen
	}
	switch {
	case next == TCPSynSent2:
		r.flags2 |= rf2SimOpen
	case next == TCPSynRecv && dir == Reply && cls == segACK && r.flags2&rf2SimOpen != 0:
		// The reply side's ACK completes a simultaneous open.
		next = TCPEstablished
	}

	// Keepalives are judged against the state before this segment.
	if isProbe(r, dir, p) {
		res.Keepalive = true
		r.flags |= probeBit(dir)
	} else {
		r.flags &^= probeBit(dir)
		res.KeepaliveAck = isProbeAnswer(r, dir, p)
	}
	r.flags &^= probeBit(1 - dir)

	t.tcpLearnLocked(r, dir, p)
	r.state = next
	if r.flags&rfAssured == 0 && next == TCPEstablished &&
		(old == TCPSynRecv || old == TCPEstablished) && r.flags&rfSeqKnown1 != 0 {
		// Linux sets ASSURED on a valid segment in ESTABLISHED after
		// SYN_RECV, or on the first answer to a picked-up flow.
		r.flags |= rfAssured
	}
	if cls == segSYN && old == TCPSynSent && next == TCPSynSent {
		// A retransmitted SYN does not restart the timer (Linux), so that
		// port reuse cannot keep an unanswered entry alive.
		return tcpIgnore
	}
	return tcpAccept
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

// rstInWindow reports whether an RST from dir may be genuine. With the
// receiver's acknowledgement known, its seq must lie in
// [rcv.nxt, rcv.nxt + window] where rcv.nxt is the receiver's last ack and
// window its last advertised window (unscaled; stretched to cover what the
// sender has sent). A receiver that has only sent a SYN accepts an RST
// that acknowledges the SYN (RFC 9293 3.10.7.3). With nothing known, the
// RST is accepted.
func rstInWindow(r *record, dir Dir, p *Packet) bool {
	rcv := 1 - dir
	if r.flags&ackKnownBit(rcv) != 0 {
		lo := r.lastAck[rcv]
		hi := lo + uint32(r.window[rcv])
		if r.flags&seqKnownBit(dir) != 0 && after(r.nextSeq[dir], hi) {
			hi = r.nextSeq[dir]
		}
		return p.Seq-lo <= hi-lo
	}
	if r.flags&seqKnownBit(rcv) != 0 {
		return p.TCPFlags&flagACK != 0 && p.Ack == r.nextSeq[rcv]
	}
	return true
}
