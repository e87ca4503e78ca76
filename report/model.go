package report

import (
	"strconv"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/replay"
)

// Kind is what a report was made from.
type Kind uint8

const (
	FromScenarioRun Kind = iota // a scenario run: its story, expectations and capture
	FromCaptureFile             // a pcapng the gateway recorded
	FromReplayRun               // a replay of a capture through profiles
	FromLiveLab                 // a snapshot of a running lab
)

var kindNames = [...]string{"scenario", "capture", "replay", "live"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Report is everything one HTML report shows, as data: the renderer (WriteHTML) only
// lays it out. Times are offsets from Start.
type Report struct {
	Kind     Kind
	Title    string
	Subtitle string    // what it was made from: the scenario file, the capture, the lab
	Start    time.Time // the instant every offset counts from
	Duration time.Duration
	Story    *Story // a scenario run's texts and verdict; nil otherwise
	// Views are what the packets met: one per policy (a scenario, a capture and a
	// live lab have one; a replay one per profile, in the profiles' order).
	Views []View
	// Matrix is a replay's flows x profiles; nil otherwise.
	Matrix *Matrix
	// Live is a live lab's table and counters; nil otherwise.
	Live *Live
	// Notes say what the report approximated or left out, and why: folded arrows,
	// sampled occupancy, connections not drawn, disagreements with the gateway.
	Notes []string
}

// Story is a scenario's texts, expectations and verdict.
type Story struct {
	Name, Title        string
	Concept, Tale, Fix string // the scenario file's concept, story and fix, reflowed
	Pass               bool
	Verdict            string // PASS or FAIL
	VerdictLine        string // "PASS idle-reset (5.7s): 4 of 4 expectations met"
	Error              string // the story could not be played to its end
	Checks             []Check
	Warnings           []string
	GatewayCounts      string // "1 new, 1 expired, ..."
	PolicySummary      string // the keys that differ from Linux's defaults
}

// Check is one expectation and what the run saw.
type Check struct {
	Expect, Got, Why string
	Pass             bool
}

// View is what the packets met under one policy: the sequence diagram, each
// connection's idle timer, and the table's occupancy.
type View struct {
	Name      string // "idlegate" (a run or capture), the profile's name (a replay)
	Policy    string // one line: the keys that differ from Linux's defaults
	Sequence  Sequence
	Conns     []Conn
	Occupancy Occupancy
	// Disagreed counts packets whose verdict in the report's replay of a gateway
	// capture differs from the verdict the gateway wrote (0 when it agrees, as it
	// should: then the timers are the gateway's own).
	Disagreed int
}

// Lifeline is one of the three vertical lines of the sequence diagram.
type Lifeline uint8

const (
	Client  Lifeline = iota // the inside, where connections start
	Gateway                 // idlegate, the box in the middle
	Server                  // the outside
)

var lifelineNames = [...]string{"client", "idlegate", "server"}

func (l Lifeline) String() string {
	if int(l) < len(lifelineNames) {
		return lifelineNames[l]
	}
	return "lifeline(" + strconv.Itoa(int(l)) + ")"
}

// sideLifeline is the lifeline of a gateway side.
func sideLifeline(s policy.Side) Lifeline {
	if s == policy.Inside {
		return Client
	}
	return Server
}

// ArrowKind says what an arrow of the sequence diagram is.
type ArrowKind uint8

const (
	// Crossed: a packet the gateway forwarded, from its sender's lifeline to its
	// receiver's, across the idlegate lifeline.
	Crossed ArrowKind = iota
	// Dropped: a packet the gateway did not forward; the arrow ends at the idlegate
	// lifeline with its verdict and reason.
	Dropped
	// Injected: a packet the gateway originated (a RST, an ICMP error) in answer to
	// a packet it read; the arrow starts at the idlegate lifeline.
	Injected
	// ExpiryReset: a RST the gateway sent when a connection's timeout fired
	// (reset_on_expire); it starts at the idlegate lifeline.
	ExpiryReset
)

var arrowKindNames = [...]string{"crossed", "dropped", "injected", "expiry-reset"}

func (k ArrowKind) String() string {
	if int(k) < len(arrowKindNames) {
		return arrowKindNames[k]
	}
	return "arrow(" + strconv.Itoa(int(k)) + ")"
}

// Arrow is one packet of the sequence diagram, or several folded into one (Count).
type Arrow struct {
	At       time.Duration // when the gateway saw it
	Until    time.Duration // folded: the last packet's time; else At
	From, To Lifeline
	Kind     ArrowKind
	// Conn is the index in View.Conns of the connection the packet belongs to (for
	// a packet of no live connection, the last one of its tuple); -1 for none.
	Conn int
	// Label is what the packet is: TCP flags ("SYN", "PSH|ACK", "RST"), "UDP",
	// "echo request", "ICMP unreachable code 13"; a folded arrow lists up to three
	// ("PSH|ACK, ACK"). Bytes is the payload, summed over folded packets.
	Label string
	Bytes int
	// Keepalive: a TCP keepalive probe; Refreshed: the packet restarted its
	// connection's idle timer (known for packets the gateway read).
	Keepalive, Refreshed bool
	// Verdict and Reason are the gateway's word on the packet, as policy.Verdict and
	// policy.Reason write them ("reset", "orphan"); for Injected, on the packet it
	// answered; an ExpiryReset's reason is "reset_on_expire".
	Verdict, Reason string
	// NAT is the rewrite the packet got, "198.18.0.2:40000 → 198.19.0.1:1024"; "" for none.
	NAT string
	// Count is how many packets the arrow stands for: 1, or more when folded.
	Count int

	plain bool // an ordinary forwarded packet, the first to be folded
}

// Note is a line of text on one lifeline at one time: what a process said (a
// scenario's timeline), what the table did (DESTROY ... expired), an operator step.
type Note struct {
	At   time.Duration
	On   Lifeline
	Text string
	// Alarm marks what went wrong: an error, a reset, an entry destroyed.
	Alarm bool
}

// Sequence is the sequence diagram: client | idlegate | server.
type Sequence struct {
	Arrows []Arrow
	Notes  []Note
	// Packets is how many packets the gateway read (each drawn or folded into an
	// arrow), Injected how many it sent itself. Hidden counts packets not drawn
	// because they never cross a router (policy.ReasonNotForwarded: multicast,
	// link-local), such as the namespaces' own IPv6 neighbour discovery.
	Packets, Injected, Hidden int
	// Folded is how many packets are drawn as part of an arrow with Count > 1, and
	// FoldWindow the longest time one folded arrow spans (0: none folded).
	Folded     int
	FoldWindow time.Duration
	// NotesLeft counts notes left out (too many of one kind).
	NotesLeft int
}

// Conn is one connection table entry from its NEW to its end: its states and its
// idle timer against the timeout in force.
type Conn struct {
	Name   string // "tcp 198.18.0.2:44336 → 198.19.0.2:7000", with " (nat :1024)" under NAT
	Short  string // "tcp :44336 → :7000"
	Proto  string
	Born   time.Duration
	States []StateSpan
	Timer  Timer
	// End is how the entry ended; nil if it was still alive at the end.
	End     *End
	Packets int
}

// StateSpan is a stretch of time in one state, with that state's idle timeout.
type StateSpan struct {
	From, To time.Duration
	State    string // "SYN_SENT", "ESTABLISHED", "TIME_WAIT", ...; UDP "UNREPLIED" / "REPLIED" / "ASSURED"
	Timeout  time.Duration
}

// Timer is an idle timer over time: it fills while nothing refreshes it and empties
// on refresh. Its fill at time t on a ramp is (t - ramp.From) / ramp.Timeout; 1 is
// the deadline.
type Timer struct {
	Ramps []Ramp
	// Probes are the TCP keepalive probes the connection carried.
	Probes []Probe
	// Merged counts refreshes folded into Busy ramps.
	Merged int
}

// Ramp is the timer from one refresh to the next (or to the entry's end).
type Ramp struct {
	From, To time.Duration
	Timeout  time.Duration // in force on the ramp
	State    string
	// Busy: several refreshes close together, folded; Peak is the highest fill
	// reached on it. A ramp that is not busy peaks at its end.
	Busy bool
	Peak float64
}

// Fill is the timer's fill at the ramp's end.
func (r Ramp) Fill() float64 {
	if r.Busy {
		return r.Peak
	}
	if r.Timeout <= 0 {
		return 0
	}
	return float64(r.To-r.From) / float64(r.Timeout)
}

// Probe is one keepalive probe and whether it restarted the idle timer.
type Probe struct {
	At        time.Duration
	Refreshed bool
}

// End is how a table entry ended.
type End struct {
	At time.Duration // the moment it died: the deadline for an expiry
	// Seen is when the gateway noticed (its sweep or a lookup); the same as At but
	// for expiries, which are noticed a little after the deadline.
	Seen    time.Duration
	Reason  conntrack.Reason // why: expired, evicted, closed, flushed, deleted
	Idle    time.Duration    // how long the timer had run
	Timeout time.Duration    // the timeout that fired (expired, closed)
}

// Occupancy is the table's size over time against its capacity.
type Occupancy struct {
	Capacity int
	Points   []Level // step series; a point holds until the next
	Peak     int
	// Sampled: Points keep the highest level of each interval of SampleWindow.
	SampleWindow time.Duration
	Evictions    []time.Duration // when entries were evicted (at most maxMarks listed)
	Evicted      int
	Refused      int // new connections refused because the table was full (reason table-full)
}

// Level is the number of entries from At on.
type Level struct {
	At      time.Duration
	Entries int
}

// Matrix is a replay across profiles: one row per flow, one column per profile.
type Matrix struct {
	Profiles []Column
	Rows     []Row
	// Hidden counts flows not listed (every profile kept them, in a large capture).
	Hidden  int
	Summary string // replay's one sentence
}

// Column is one profile of a replay.
type Column struct {
	Name        string
	Established string // the TCP ESTABLISHED timeout replayed, with the real one when scaled
	Survived    int
	Broken      int
}

// Row is one flow of a replay.
type Row struct {
	Flow    string // "tcp 198.18.0.2:40000 -> 198.19.0.2:5432"
	Packets int
	// Gaps are the flow's idle gaps, longest first (at most maxGaps), and LongestIdle
	// the longest of all.
	Gaps        []Gap
	LongestIdle time.Duration
	First, Last time.Duration
	Cells       []Cell // per profile, in Matrix.Profiles' order
}

// Gap is a silence of a flow between two of its packets.
type Gap struct {
	From, To time.Duration
}

// Cell is what one profile did to one flow.
type Cell struct {
	Outcome replay.Outcome
	Text    string // "ok", "reset @6"
	Detail  string // "after 399.999s idle, timeout 350s: orphan"
	At      time.Duration
	Idle    time.Duration
	Timeout time.Duration // the (scaled) timeout that fired, 0 if none
	// Timer is the flow's idle timer in this profile (all its entries, one after the
	// other). Peak is the highest fill it reached between the flow's first and last
	// packet (its longest idle gap in this box's terms: 1 is the deadline), and
	// InForce the timeout in force there.
	Timer   Timer
	Peak    float64
	InForce time.Duration
}

// Live is a snapshot of a running lab's table and counters.
type Live struct {
	Lab      string
	Entries  []LiveEntry
	Verdicts map[string]uint64
	Reasons  map[string]uint64
	Counters []Counter
	Window   time.Duration // how long events were collected
	Events   int
}

// LiveEntry is one entry of a live table: how long it has idled against its timeout.
type LiveEntry struct {
	Name    string
	State   string
	Idle    time.Duration
	Timeout time.Duration
	Left    time.Duration
	NAT     string
	Packets [2]uint64
}

// Counter is a named number.
type Counter struct {
	Name  string
	Value uint64
}
