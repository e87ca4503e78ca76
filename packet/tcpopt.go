package packet

// TCP option kinds this package reads (RFC 9293 3.2, RFC 7323 2.2).
const (
	tcpOptEOL         = 0
	tcpOptNOP         = 1
	tcpOptWindowScale = 3

	tcpOptWindowScaleLen = 3
)

// TCPWindowScale returns the window scale option (RFC 7323 2.2: the shift
// count, as sent; RFC 7323 2.3 caps its use at 14) of the TCP segment in b
// that Decode described in p, and whether the segment carries one. The
// options are walked as Linux's tcp_options walks them: an end-of-list option
// or a malformed length ends the walk, a later window scale option replaces an
// earlier one. It does not allocate; a segment without a whole TCP header in b
// has no option.
func TCPWindowScale(b []byte, p *Info) (shift uint8, ok bool) {
	if p.Proto != ProtoTCP || !p.HasL4 || p.L4Off < 0 || p.L4Off+TCPMinHeaderLen > len(b) {
		return 0, false
	}
	seg := b[p.L4Off:]
	hl := int(seg[tcpDataOff]>>4) * 4
	if hl < TCPMinHeaderLen || hl > len(seg) {
		return 0, false
	}
	opts := seg[TCPMinHeaderLen:hl]
	for len(opts) > 0 {
		switch opts[0] {
		case tcpOptEOL:
			return shift, ok
		case tcpOptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return shift, ok
		}
		n := int(opts[1])
		if n < 2 || n > len(opts) {
			return shift, ok // "silly" or partial option
		}
		if opts[0] == tcpOptWindowScale && n == tcpOptWindowScaleLen {
			shift, ok = opts[2], true
		}
		opts = opts[n:]
	}
	return shift, ok
}
