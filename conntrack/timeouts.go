package conntrack

import (
	"fmt"
	"time"
)

// Timeouts are the idle timeouts: an entry is expired when
// now >= last refresh + the timeout of its current state.
// Every field must be positive.
type Timeouts struct {
	// TCP is indexed by TCPState.
	TCP [NumTCPStates]time.Duration
	// TCPUnacknowledged caps the timeout of a TCP entry whose last refresh
	// found data not yet acknowledged, and of a picked-up entry that has seen
	// no reply (Linux timeouts[TCP_CONNTRACK_UNACK]).
	TCPUnacknowledged time.Duration
	// TCPMaxRetrans caps the timeout of a TCP entry once its last segment
	// was repeated Config.MaxRetrans times, or whose last ACK advertised a
	// zero window (Linux timeouts[TCP_CONNTRACK_RETRANS]).
	TCPMaxRetrans time.Duration
	// UDPUnreplied applies to a UDP entry that has seen no reply.
	UDPUnreplied time.Duration
	// UDPReplied applies once both directions were seen (assured).
	UDPReplied time.Duration
	// ICMP applies to ICMP and ICMPv6 echo entries.
	ICMP time.Duration
	// Generic applies to any other IP protocol.
	Generic time.Duration
}

// DefaultTimeouts returns Linux nf_conntrack's defaults
// (Documentation/networking/nf_conntrack-sysctl.rst; the TCP values are the
// tcp_timeouts table of net/netfilter/nf_conntrack_proto_tcp.c).
func DefaultTimeouts() Timeouts {
	var t Timeouts
	// NONE is never held by an entry; Linux keeps timeouts[0] equal to
	// SYN_SENT as the "new" timeout.
	t.TCP[TCPNone] = 120 * time.Second
	t.TCP[TCPSynSent] = 120 * time.Second        // nf_conntrack_tcp_timeout_syn_sent 120 s
	t.TCP[TCPSynRecv] = 60 * time.Second         // nf_conntrack_tcp_timeout_syn_recv 60 s
	t.TCP[TCPEstablished] = 432000 * time.Second // nf_conntrack_tcp_timeout_established 432000 s (5 days)
	t.TCP[TCPFinWait] = 120 * time.Second        // nf_conntrack_tcp_timeout_fin_wait 120 s
	t.TCP[TCPCloseWait] = 60 * time.Second       // nf_conntrack_tcp_timeout_close_wait 60 s
	t.TCP[TCPLastAck] = 30 * time.Second         // nf_conntrack_tcp_timeout_last_ack 30 s
	t.TCP[TCPTimeWait] = 120 * time.Second       // nf_conntrack_tcp_timeout_time_wait 120 s
	t.TCP[TCPClose] = 10 * time.Second           // nf_conntrack_tcp_timeout_close 10 s
	t.TCP[TCPSynSent2] = 120 * time.Second       // tcp_timeouts[TCP_CONNTRACK_SYN_SENT2] 2 min (no sysctl)
	t.TCPUnacknowledged = 300 * time.Second      // nf_conntrack_tcp_timeout_unacknowledged 300 s
	t.TCPMaxRetrans = 300 * time.Second          // nf_conntrack_tcp_timeout_max_retrans 300 s
	t.UDPUnreplied = 30 * time.Second            // nf_conntrack_udp_timeout 30 s
	t.UDPReplied = 120 * time.Second             // nf_conntrack_udp_timeout_stream 120 s
	t.ICMP = 30 * time.Second                    // nf_conntrack_icmp_timeout, nf_conntrack_icmpv6_timeout 30 s
	t.Generic = 600 * time.Second                // nf_conntrack_generic_timeout 600 s
	return t
}

// Validate reports the first timeout that is not positive.
func (t *Timeouts) Validate() error {
	for s, d := range t.TCP {
		if d <= 0 {
			return fmt.Errorf("conntrack: TCP %s timeout is %v; it must be positive", TCPState(s), d)
		}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"TCP unacknowledged", t.TCPUnacknowledged}, {"TCP max_retrans", t.TCPMaxRetrans},
		{"UDP unreplied", t.UDPUnreplied}, {"UDP replied", t.UDPReplied}, {"ICMP", t.ICMP}, {"generic", t.Generic}} {
		if f.d <= 0 {
			return fmt.Errorf("conntrack: %s timeout is %v; it must be positive", f.name, f.d)
		}
	}
	return nil
}

// timeoutClass is which timeout a TCP entry's last refresh chose, by the rules
// of Linux's nf_conntrack_tcp_packet (see tcpTimeoutLocked): the state's own,
// CLOSE's after an RST, or the state's capped by the unacknowledged or the
// max_retrans timeout. It is kept, not recomputed, so that packets that do not
// restart the timer cannot move the deadline, as in Linux, where the timeout is
// set only when the timer is.
type timeoutClass uint8

const (
	classState   timeoutClass = iota // timeouts[new_state]
	classClose                       // an RST: timeouts[TCP_CONNTRACK_CLOSE], whatever the state
	classUnack                       // min(timeouts[state], timeouts[TCP_CONNTRACK_UNACK])
	classRetrans                     // min(timeouts[state], timeouts[TCP_CONNTRACK_RETRANS])
)

// timeout is the idle timeout of an entry of protocol proto in TCP state st
// with timeout class c (TCP) or the given assured flag (UDP).
func (t *Timeouts) timeout(proto uint8, st TCPState, c timeoutClass, assured bool) time.Duration {
	switch proto {
	case ProtoTCP:
		d := t.TCP[st]
		switch c {
		case classClose:
			d = t.TCP[TCPClose]
		case classUnack:
			d = min(d, t.TCPUnacknowledged)
		case classRetrans:
			d = min(d, t.TCPMaxRetrans)
		}
		return d
	case ProtoUDP:
		if assured {
			return t.UDPReplied
		}
		return t.UDPUnreplied
	case ProtoICMP, ProtoICMPv6:
		return t.ICMP
	}
	return t.Generic
}
