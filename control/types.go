package control

import (
	"fmt"
	"time"

	"github.com/idlegate/idlegate/policy"
)

// Conn is one connection of the table, as GET /v1/conntrack shows it.
type Conn struct {
	// ID names the connection for its whole life (conntrack -L -o id).
	ID    uint64 `json:"id"`
	Proto string `json:"proto"`
	// State is the TCP state as Linux names it (ESTABLISHED); empty for other
	// protocols.
	State string `json:"state,omitempty"`
	// Assured: conntrack's ASSURED (TCP: the handshake completed; UDP: replied
	// and still active 2 s after it opened, a stream). Unreplied: nothing seen in
	// the reply direction yet (no IPS_SEEN_REPLY), conntrack's [UNREPLIED]. Neither:
	// replied, not (yet) assured (Status says REPLIED).
	Assured   bool `json:"assured"`
	Unreplied bool `json:"unreplied"`
	// TimeLeft is the time until the idle timeout fires; Timeout is the idle
	// timeout of the current state; Idle is the time since the last packet.
	// Seconds, on the gateway's clock (scaled timeouts on a scaled lab).
	TimeLeft float64 `json:"timeout_left_s"`
	Timeout  float64 `json:"timeout_s"`
	Idle     float64 `json:"idle_s"`
	// Orig is the tuple of the packet that opened the connection; Reply the tuple
	// of its answers, which differs from Orig reversed under NAT.
	Orig  Tuple `json:"orig"`
	Reply Tuple `json:"reply"`
	// NAT is "inside address:port -> outside address:port" under source NAT.
	NAT     string `json:"nat,omitempty"`
	Packets PerDir `json:"packets"`
	Bytes   PerDir `json:"bytes"`
	// Created is when the connection was opened and Refreshed when its idle timer
	// last restarted.
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
}

// Status is Assured and Unreplied as one word for people: "ASSURED",
// "UNREPLIED", "REPLIED" for a connection without TCP states that was answered
// but is not (yet) assured (a UDP request and its answer, within 2 s: Linux
// shows neither flag), or "" for a TCP one (SYN_RECV: its state says it).
func (c *Conn) Status() string {
	switch {
	case c.Assured:
		return "ASSURED"
	case c.Unreplied:
		return "UNREPLIED"
	case c.State == "":
		return "REPLIED"
	}
	return ""
}

// Tuple is one direction of a connection. TCP and UDP have ports; ICMP echo has
// ICMP instead (no ports).
type Tuple struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort uint16 `json:"sport,omitempty"`
	DstPort uint16 `json:"dport,omitempty"`
	ICMP    *ICMP  `json:"icmp,omitempty"`
}

// ICMP is the type, code and echo identifier of an ICMP or ICMPv6 echo tuple.
type ICMP struct {
	Type uint8  `json:"type"`
	Code uint8  `json:"code"`
	ID   uint16 `json:"id"`
}

// String formats t as conntrack -L does, without the protocol:
// "198.18.0.2:40000 -> 198.19.0.2:80", "[fd00:18::2]:40000 -> [fd00:19::2]:80",
// or "198.18.0.2 -> 198.19.0.2 type=8 code=0 id=7".
func (t Tuple) String() string {
	if t.ICMP != nil {
		return fmt.Sprintf("%s -> %s type=%d code=%d id=%d", t.Src, t.Dst, t.ICMP.Type, t.ICMP.Code, t.ICMP.ID)
	}
	return hostPort(t.Src, t.SrcPort) + " -> " + hostPort(t.Dst, t.DstPort)
}

func hostPort(a string, p uint16) string {
	for i := 0; i < len(a); i++ {
		if a[i] == ':' {
			return fmt.Sprintf("[%s]:%d", a, p)
		}
	}
	return fmt.Sprintf("%s:%d", a, p)
}

// PerDir is a counter per direction of a connection.
type PerDir struct {
	Original uint64 `json:"original"`
	Reply    uint64 `json:"reply"`
}

// Event is one line of GET /v1/events: a change to a connection (NEW, UPDATE,
// DESTROY, as conntrack -E names them), one packet's VERDICT, LOST: this
// subscriber's buffer overflowed and Lost events were dropped (the events around
// it are in order; the lost ones are gone), or, on a wedge, GONE and ATTACH: a
// side's namespace went away or it was attached again.
type Event struct {
	// Time is the wall-clock time of the event; T the seconds since the gateway
	// started.
	Time time.Time `json:"time"`
	T    float64   `json:"t"`
	Type string    `json:"type"`
	// ID is the connection's (0 for a VERDICT of a packet of no connection).
	ID    uint64 `json:"id,omitempty"`
	Proto string `json:"proto,omitempty"`
	// State is the TCP state (after the change, for an UPDATE: OldState before).
	State    string `json:"state,omitempty"`
	OldState string `json:"old_state,omitempty"`
	// Assured and Unreplied as in Conn (not for VERDICT).
	Assured   bool `json:"assured,omitempty"`
	Unreplied bool `json:"unreplied,omitempty"`
	// Orig and Reply are the connection's tuples as in Conn; a VERDICT of a packet
	// of no connection has the packet's own tuple and its reverse.
	Orig  *Tuple `json:"orig,omitempty"`
	Reply *Tuple `json:"reply,omitempty"`
	NAT   string `json:"nat,omitempty"`
	// Reason is why: a DESTROY's (expired, evicted, closed, flushed, deleted), or
	// a VERDICT's (orphan, tracked, ...).
	Reason string `json:"reason,omitempty"`
	// DESTROY: how long the connection had been idle and the timeout of its
	// state, seconds.
	Idle    float64 `json:"idle_s,omitempty"`
	Timeout float64 `json:"timeout_s,omitempty"`
	// Counters at the time (not for VERDICT).
	Packets *PerDir `json:"packets,omitempty"`
	Bytes   *PerDir `json:"bytes,omitempty"`
	// VERDICT only: what the packet got, the way it crossed (outbound,
	// inbound), and whether it was a TCP keepalive probe.
	Verdict   string `json:"verdict,omitempty"`
	Dir       string `json:"dir,omitempty"`
	Keepalive bool   `json:"keepalive,omitempty"`
	// LOST only: how many events this subscriber lost since the last LOST.
	Lost uint64 `json:"lost,omitempty"`
	// GONE and ATTACH only (the gateway's own events, of a wedge): the side ("A"
	// or "B"), its target (docker:db) and one sentence for people.
	Side    string `json:"side,omitempty"`
	Target  string `json:"target,omitempty"`
	Message string `json:"message,omitempty"`
}

// Types of the records of GET /v1/events that are not the engine's. Every stream
// gets them, whatever its filter: they concern no one connection.
const (
	// EventLost: this subscriber lost Lost events.
	EventLost = "LOST"
	// EventGone: a wedge's side is gone, its namespace went away (a container
	// stopped or restarted).
	EventGone = "GONE"
	// EventAttach: a wedge's side that went away is attached again, in its new
	// namespace (wedge --follow).
	EventAttach = "ATTACH"
)

// Stats is GET /v1/stats: every counter since the gateway started. Counters of an
// enumeration are maps keyed by name, never arrays.
type Stats struct {
	Uptime   float64 `json:"uptime_s"`
	Entries  int     `json:"entries"`
	Capacity int     `json:"capacity"`
	// Verdicts counts packets per verdict (forward, drop, reset, reject) and
	// Reasons per reason of their verdict (tracked, new, orphan, ...).
	Verdicts map[string]uint64 `json:"verdicts"`
	Reasons  map[string]uint64 `json:"reasons"`
	// Bytes counts the bytes of the packets that arrived on each side (inside,
	// outside), per verdict.
	Bytes map[string]map[string]uint64 `json:"bytes"`
	Table TableStats                   `json:"table"`
	// Injected counts packets the gateway originated (RST, ICMP).
	Injected uint64 `json:"injected"`
	NATMaps  int    `json:"nat_mappings"`
	// EventsDropped counts events lost by slow subscribers, all of them.
	EventsDropped uint64    `json:"events_dropped"`
	Inside        SideStats `json:"inside"`
	Outside       SideStats `json:"outside"`
	// Pcap is the file being recorded, if any. PcapWriteErrors counts recordings
	// a write error stopped; PcapFailed is the last of them, until a recording
	// starts again.
	Pcap            string      `json:"pcap,omitempty"`
	PcapWriteErrors uint64      `json:"pcap_write_errors"`
	PcapFailed      *PcapStatus `json:"pcap_failed,omitempty"`
}

// TableStats are the connection table's counters.
type TableStats struct {
	Created uint64 `json:"created"`
	// Destroyed counts connections destroyed, per reason (expired, evicted,
	// closed, flushed, deleted).
	Destroyed map[string]uint64 `json:"destroyed"`
	// Full counts new connections refused because the table was full; Invalid
	// packets the state machine found invalid; Clash new connections whose reply
	// tuple was taken.
	Full    uint64 `json:"full"`
	Invalid uint64 `json:"invalid"`
	Clash   uint64 `json:"clash"`
	// KeepaliveProbes counts the TCP keepalive probes seen.
	KeepaliveProbes uint64 `json:"keepalive_probes"`
}

// SideStats counts packets per side of the gateway: received from it (rx), sent
// to it (tx).
type SideStats struct {
	RxPackets   uint64 `json:"rx_packets"`
	RxBytes     uint64 `json:"rx_bytes"`
	TxPackets   uint64 `json:"tx_packets"`
	TxBytes     uint64 `json:"tx_bytes"`
	Injected    uint64 `json:"injected"`
	WriteErrors uint64 `json:"write_errors"`
	ReadErrors  uint64 `json:"read_errors"`
}

// PcapRequest is the body of POST /v1/pcap.
type PcapRequest struct {
	Path  string `json:"path"`            // "" stops recording
	Force bool   `json:"force,omitempty"` // overwrite an existing file
}

// PcapAnswer is the answer to POST /v1/pcap: the file now recorded ("" for none),
// the filter it records with, and the recording that ended (the one replaced or
// stopped, or the last one a write error stopped), if any.
type PcapAnswer struct {
	Pcap   string      `json:"pcap"`
	Filter string      `json:"filter,omitempty"`
	Ended  *PcapStatus `json:"ended,omitempty"`
}

// PcapStatus describes a recording that ended.
type PcapStatus struct {
	Path    string    `json:"path"`
	Packets int       `json:"packets"`         // records the file holds
	Last    time.Time `json:"last,omitzero"`   // the timestamp of the last of them
	Error   string    `json:"error,omitempty"` // the write error that stopped it
}

// String says what the file holds and, after a write error, that recording stopped.
func (s PcapStatus) String() string {
	holds := fmt.Sprintf("%s holds %d packets", s.Path, s.Packets)
	switch {
	case s.Packets == 0:
		holds = s.Path + " holds no packets"
	case !s.Last.IsZero():
		holds += " up to " + s.Last.Format("2006-01-02 15:04:05.000 MST")
	}
	if s.Error != "" {
		return "recording stopped after a write error: " + s.Error + "; " + holds
	}
	return holds
}

// PcapInfo is GET /v1/pcap: the recording in progress, if any.
type PcapInfo struct {
	Recording bool   `json:"recording"`
	Path      string `json:"path,omitempty"`
	// Filter is the recording's filter as Filter.String writes it; "" records
	// every packet.
	Filter  string    `json:"filter,omitempty"`
	Started time.Time `json:"started,omitzero"`
	// Packets is the number of records written so far (the gateway flushes them to
	// the file within a second).
	Packets int `json:"packets"`
	// Failed is the last recording a write error stopped, until the next starts.
	Failed *PcapStatus `json:"failed,omitempty"`
}

// Kinds of Lab.
const (
	KindLab   = "lab"   // two namespaces idlegate built (lab up)
	KindWedge = "wedge" // two namespaces that existed already (idlegate wedge)
)

// Lab describes a lab or a wedge: what its run directory's lab.json holds, and,
// from GET /v1/lab, its uptime and live policy.
type Lab struct {
	Name string `json:"name"`
	// Kind is KindLab or KindWedge (Wedge describes its sides; Client is its side
	// A, Server its side B, each Namespace the side's target).
	Kind       string    `json:"kind"`
	PID        int       `json:"pid"`
	Version    string    `json:"version,omitempty"`
	Started    time.Time `json:"started"`
	Uptime     float64   `json:"uptime_s,omitempty"`
	RunDir     string    `json:"run_dir"`
	Socket     string    `json:"socket"`
	Log        string    `json:"log,omitempty"`
	PolicyFile string    `json:"policy_file,omitempty"`
	// Metrics is the TCP address /metrics is also served on (lab up --metrics).
	Metrics string   `json:"metrics,omitempty"`
	MTU     int      `json:"mtu"`
	Device  string   `json:"device"`
	Client  Side     `json:"client"`
	Server  Side     `json:"server"`
	NAT     []string `json:"nat_outside"`
	// Wedge describes a wedge (Kind "wedge" only).
	Wedge *Wedge `json:"wedge,omitempty"`
	PolicyView
}

// IsWedge reports whether l is a wedge.
func (l *Lab) IsWedge() bool { return l.Kind == KindWedge }

// Wedge describes what a wedge put in its two namespaces.
type Wedge struct {
	Sides  [2]WedgeSide `json:"sides"` // A (inside), B (outside)
	Follow bool         `json:"follow"`
	// Adopted counts the TCP connections open between A and B when the wedge went
	// in: the gateway picks them up mid-stream, whatever the orphan rule says.
	Adopted int `json:"adopted"`
	// NATOff says why a NAT policy runs with NAT off ("" when it does not).
	NATOff string `json:"nat_off,omitempty"`
	// Networks are what the gateway routes by (its anti-spoofing and no-route
	// checks): each side's own addresses as host prefixes, since two containers on
	// one bridge share a subnet, and the NAT addresses as the gateway's own.
	Networks Networks `json:"networks"`
}

// WedgeSide describes one side of a wedge.
type WedgeSide struct {
	Target string `json:"target"`
	// NetnsID is the namespace's inode (net:[ID]); it changes when a container
	// restarts.
	NetnsID uint64   `json:"netns_id"`
	Link    string   `json:"link"`
	MTU     int      `json:"mtu"`
	Addrs   []string `json:"addrs"`  // the side's own addresses the wedge carries
	Peers   []string `json:"peers"`  // the other side's
	Via     []string `json:"via"`    // the interfaces that carried the peer before
	Routes  []string `json:"routes"` // host routes through Link
}

// Networks are the networks on each side of the gateway, as prefixes, and its
// own addresses (policy.Networks, written out).
type Networks struct {
	Inside  []string `json:"inside"`
	Outside []string `json:"outside"`
	Gateway []string `json:"gateway,omitempty"`
}

// Side describes one namespace of a lab.
type Side struct {
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
	Addr4     string `json:"addr4"`
	Addr6     string `json:"addr6"`
}

// PolicyView is a lab's policy in the units its user wrote (Policy) and, on a
// scaled lab, as the gateway runs it (InForce: every timeout times TimeScale).
// POST /v1/policy answers it.
type PolicyView struct {
	// Profile is the built-in profile the policy started from, if any.
	Profile string `json:"profile,omitempty"`
	// TimeScale multiplies every timeout (lab up --time-scale); 1 is real time.
	TimeScale float64       `json:"time_scale"`
	Policy    policy.Policy `json:"policy"`
	InForce   policy.Policy `json:"in_force,omitzero"`
}

// Scale is TimeScale, with 0 (a lab.json of an older idlegate) read as 1.
func (v *PolicyView) Scale() float64 {
	if v.TimeScale == 0 {
		return 1
	}
	return v.TimeScale
}

// Version is GET /v1/version: the build of the gateway.
type Version struct {
	// Version is the module version (v1.2.3, from go install) or git describe
	// (from make build), or "devel" for a build that knows neither.
	Version  string `json:"version"`
	Go       string `json:"go"`
	Revision string `json:"revision,omitempty"` // the VCS commit, when known
}

// String is "idlegate v1.2.3 (go1.26.8, abcdef0)".
func (v Version) String() string {
	s := "idlegate " + v.Version + " (" + v.Go
	if v.Revision != "" {
		r := v.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		s += ", " + r
	}
	return s + ")"
}
