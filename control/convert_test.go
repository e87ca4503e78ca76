package control

import (
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// TestConnStatus: ConnOf takes the flags from the table's (IPS_SEEN_REPLY for
// UNREPLIED, not a packet count), and Status names the four cases: a UDP or ICMP
// flow answered but not assured is REPLIED, a TCP one in that case has only its
// state (SYN_RECV).
func TestConnStatus(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cases := []struct {
		name             string
		key              conntrack.Key
		st               conntrack.TCPState
		assured, replied bool
		want             string
	}{
		{"udp unreplied", udpKey, conntrack.TCPNone, false, false, "UNREPLIED"},
		{"udp replied, not a stream", udpKey, conntrack.TCPNone, false, true, "REPLIED"},
		{"udp stream", udpKey, conntrack.TCPNone, true, true, "ASSURED"},
		{"icmp answered", icmpKey, conntrack.TCPNone, false, true, "REPLIED"},
		{"tcp syn_sent", tcpKey, conntrack.TCPSynSent, false, false, "UNREPLIED"},
		{"tcp syn_recv", tcpKey, conntrack.TCPSynRecv, false, true, ""},
		{"tcp established", tcpKey, conntrack.TCPEstablished, true, true, "ASSURED"},
	}
	for _, c := range cases {
		// The reply packet count says the opposite of the flag: the flag wins.
		replies := uint64(1)
		if c.replied {
			replies = 0
		}
		e := entry(1, c.key, c.key.Reply(), c.st, c.assured, replies)
		e.Replied = c.replied
		conn := ConnOf(e, now)
		if conn.Unreplied == c.replied || conn.Assured != c.assured {
			t.Errorf("%s: unreplied %v assured %v, want %v %v", c.name, conn.Unreplied, conn.Assured, !c.replied, c.assured)
		}
		if got := conn.Status(); got != c.want {
			t.Errorf("%s: status %q, want %q", c.name, got, c.want)
		}
	}
}
