// Package conntrack is idlegate's connection table: the state a stateful
// firewall or NAT keeps per flow, and forgets on purpose when the flow
// goes idle. It is pure: time is a parameter, nothing runs in the
// background, nothing touches a file descriptor.
//
// # Flows and keys
//
// An entry has an original tuple (the packet that created it) and a reply
// tuple, p.Key.Reply() for a plain flow and the translated tuple under
// NAT. Track finds the entry of either tuple and reports the packet's Dir.
// ICMP and ICMPv6 echo keep the echo identifier in both port fields.
//
// # States
//
// TCP entries follow Linux nf_conntrack's state table
// (net/netfilter/nf_conntrack_proto_tcp.c, tcp_conntracks): NONE,
// SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE and SYN_SENT2 for a simultaneous open, with the special
// cases of nf_conntrack_tcp_packet (tcp.go says which). In short:
//   - a flag combination tcp_error refuses (SYN-FIN, SYN-RST, FIN without
//     ACK, no flags: ValidFlags) is Invalid and never opens an entry;
//   - segments the table marks invalid return Invalid and change nothing;
//     segments it ignores (a retransmitted SYN-ACK, a SYN on an ESTABLISHED
//     entry) pass but do not restart the timer, nor does a retransmitted
//     SYN before any reply;
//   - an entry is assured (what early drop spares) on the segment after
//     SYN_RECV that completes the handshake, or, for a picked-up flow, on the
//     first segment after its answer; the packet that is a flow's first reply
//     is itself judged as unreplied, as Linux sets IPS_SEEN_REPLY after it;
//   - an RST before any reply deletes the entry at once (reason closed); in a
//     closing state any RST closes; once the receiver acknowledged something,
//     an RST below its highest ack is invalid and, on an ESTABLISHED assured
//     entry, only the exact one (or one right after the sender's own data)
//     closes: any other in-window RST keeps the state for the receiver's
//     challenge ACK (RFC 5961 3.2), with CLOSE's timeout;
//   - RSTs are checked against the peers' windows, scaled by the window
//     scale options of the SYNs (both must carry one); other segments are not
//     window-checked (Linux also finds data and ACKs outside the windows
//     invalid or ignores them), and a picked-up flow is never (Linux's
//     be_liberal for it);
//   - a SYN on a TIME_WAIT or CLOSE entry ends it (reason closed) and reports
//     Miss, so that the SYN creates a new entry, when a FIN was seen or the
//     SYN's side sent the RST; otherwise the SYN is ignored and the SYN-ACK
//     that acknowledges it takes the new connection up in SYN_RECV.
//
// Per direction the table tracks the highest seq+len sent, the highest ack,
// the last window and the window scale, and per entry the last segment, so
// that a keepalive probe (ACK only, 0 or 1 byte, seq = highest seq+len - 1,
// everything before it acknowledged) sets Result.Keepalive and the bare ACK
// answering it Result.KeepaliveAck, and so that the policy can forge an RST a
// Linux peer accepts (Entry.RcvNxt).
//
// UDP, ICMP and other protocols have no TCP state (TCPNone): an entry is
// unreplied until a packet is seen in the reply direction. A UDP flow that
// has seen a reply and is still active more than 2 s after its creation is
// assured and takes the stream timeout (nf_conntrack_udp_packet); a request
// answered once keeps the unreplied one. ICMP and other protocols are never
// assured.
//
// # Timeouts
//
// An entry is expired when now >= last refresh + its timeout; Timeouts gives
// one per TCP state, UDP unreplied and stream, ICMP and other protocols, and
// a TCP entry's last refresh chooses as Linux does (tcpTimeoutLocked): CLOSE's
// after an RST, the state's capped by TCPUnacknowledged while data is in
// flight or for a picked-up flow nobody answered, and by TCPMaxRetrans after
// Config.MaxRetrans repeats of a segment or a zero window. DefaultTimeouts are
// Linux's sysctl defaults, each named in a comment. SetTimeouts applies new
// values to existing entries at once, from their last refresh.
//
// # Refresh
//
// The refresh rule (Config.Refresh) decides which packets restart the idle
// timer and count as activity for LRU eviction: any packet (RefreshAny,
// Linux and AWS NLB), packets from the inside only (RefreshInside), TCP
// segments with payload that are not keepalive probes (RefreshData, the
// AWS ALB), or anything but keepalive probes and their answers
// (RefreshNoKeepalive). A packet that changes the entry's state (TCP
// state, or becoming assured; a first reply alone does not) always restarts
// the timer, under every rule: a new state starts its own timeout from now, as in Linux, so a flow
// that closes or resets gets its TIME_WAIT or CLOSE time in full.
//
// # Expiry contract
//
// Expiry is exact at lookup: Track, Create and Lookup treat an expired
// entry as missing and destroy it on the spot. Sweep, called every 20-50 ms
// by the live gateway, destroys due entries in bounded batches without a
// goroutine or timer per flow: a lazy hashed timing wheel of 10 ms ticks
// where a refresh leaves the entry in its bucket and a visit re-files
// entries not yet due. Sweep never destroys early and destroys each entry
// at the first call at or after its deadline, budget permitting.
// Destruction reasons: closed (TIME_WAIT or CLOSE reaching its timeout, a
// new SYN on the tuple, or an RST before any reply: the flow's own teardown), expired (any other idle
// timeout), evicted (table full), and the two a caller asks for through
// Destroy: flushed (everything, a middlebox reboot) and deleted (an
// operator's conntrack -D). SetTimeLeft moves an entry's deadline, as
// conntrack -U --timeout does; it then expires on the idle-timeout path.
//
// # What a call destroyed
//
// There is no callback. Every call that can destroy entries (Track,
// Create, Lookup, Sweep, Destroy) appends a Destroyed (the entry's last
// snapshot, the reason, the time) to a slice the caller passes, so that the
// caller frees what it keeps per entry (NAT mappings, per-source counts)
// and answers the end (reset_on_expire) under its own lock once the call
// returns. Select hands out Refs for bulk work that the caller does in
// chunks.
//
// # Capacity
//
// At most Config.Capacity entries. When full, Create first reclaims an
// expired entry, then applies Config.OnFull: EvictLRU destroys the least
// recently active entry, EarlyDrop the least recently active entry that is
// not assured or is a closing TCP flow (Linux early_drop), DropNew creates
// nothing. Recency is kept by two hashicorp/golang-lru simplelru lists
// over slab indices.
//
// # Memory
//
// Entries live in a pointer-free slab of fixed 144-byte records, found
// through an open-addressing index of 4-byte slots where one slot serves
// both directions of a plain flow (a NATed reply tuple takes a second slot
// and is stored beside the slab). Tracking a packet does not allocate, with
// one exception: a state change that makes an entry assured or closing
// moves it between the two simplelru lists, which allocates a list node, as
// does Create.
//
// # Locking
//
// A Table is safe for concurrent use. One mutex guards the table; methods
// named ...Locked expect it held.
//
// # Events
//
// Event is a change in conntrack -E vocabulary: NEW, UPDATE (TCP state
// change or assured), DESTROY (with Reason, and for expiries the idle time
// and the timeout that fired), plus the policy's VERDICT. The table does
// not publish them; its results carry what they need: a Create that
// returns Created is a NEW, a Result with Updated an UPDATE (Entry.Event
// builds either from Get), and each Destroyed a DESTROY (Destroyed.Event).
// The policy engine publishes the stream.
package conntrack
