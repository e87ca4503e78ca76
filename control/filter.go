package control

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// Filter picks connections, and the events about them, as conntrack-tools' filters
// do: every field that is set must hold; the zero Filter picks everything.
// Addresses and ports are those of the original direction, the tuple of the packet
// that opened the connection (conntrack's -s, -d, --sport, --dport).
//
// The CLI's flags (-p/--proto, -s/--src, -d/--dst, --sport, --dport, --state,
// --status, --nat, --id, -e/--event), the API's query parameters (the same names,
// FilterKeys) and the engine (Match) all read this one type.
type Filter struct {
	// ID picks the connection of that id (Conn.ID); 0 picks any.
	ID uint64
	// Proto is an IP protocol number: conntrack.ProtoTCP, ProtoUDP, ProtoICMP,
	// ProtoICMPv6; 0 picks any.
	Proto uint8
	// Src and Dst hold the original source and destination addresses; an address
	// alone is a prefix of its full length. The zero Prefix picks any.
	Src, Dst netip.Prefix
	// SPort and DPort are the original source and destination ports. A port picks
	// TCP and UDP connections only; 0 picks any.
	SPort, DPort uint16
	// States picks TCP connections in any of these states; empty picks any
	// connection.
	States []conntrack.TCPState
	// Status holds flags that must all hold (Assured, Unreplied); 0 picks any.
	Status Status
	// NAT picks connections with (NATOnly) or without (NATNone) source NAT.
	NAT NATMatch
	// Events are the event types a subscription receives; empty means NEW, UPDATE
	// and DESTROY, as conntrack -E. VERDICT asks for one event per packet. The
	// other fields pick the events of the connections they pick; a VERDICT has no
	// state or status, so States and Status do not apply to it.
	Events []conntrack.EventType
}

// Status is a set of conntrack status flags.
type Status uint8

const (
	// Assured: both directions seen (TCP: the handshake completed), conntrack's ASSURED.
	Assured Status = 1 << iota
	// Unreplied: nothing seen in the reply direction yet (no IPS_SEEN_REPLY),
	// conntrack's [UNREPLIED].
	Unreplied
)

// String is "ASSURED", "UNREPLIED", both joined by a comma, or "".
func (s Status) String() string {
	var names []string
	if s&Assured != 0 {
		names = append(names, "ASSURED")
	}
	if s&Unreplied != 0 {
		names = append(names, "UNREPLIED")
	}
	return strings.Join(names, ",")
}

// NATMatch picks connections by source NAT.
type NATMatch uint8

const (
	NATAny  NATMatch = iota // with or without
	NATOnly                 // the reply tuple is translated (conntrack --src-nat)
	NATNone                 // not translated
)

// FilterKeys are the names Set, ParseFilter and Query use, which are also the long
// names of the CLI's flags.
var FilterKeys = []string{"id", "proto", "src", "dst", "sport", "dport", "state", "status", "nat", "event"}

// Set parses value into the field key names (one of FilterKeys). state, status and
// event take comma-separated lists, and add to what is already set; the others
// replace it. The error is one sentence about the value, without the key.
func (f *Filter) Set(key, value string) error {
	value = strings.TrimSpace(value)
	switch key {
	case "id":
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a connection id (a number above 0, as ct list shows)", value)
		}
		f.ID = n
	case "proto":
		p, err := parseProto(value)
		if err != nil {
			return err
		}
		f.Proto = p
	case "src", "dst":
		p, err := parsePrefix(value)
		if err != nil {
			return err
		}
		if key == "src" {
			f.Src = p
		} else {
			f.Dst = p
		}
	case "sport", "dport":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a port number from 1 to 65535", value)
		}
		if key == "sport" {
			f.SPort = uint16(n)
		} else {
			f.DPort = uint16(n)
		}
	case "state":
		for _, s := range splitList(value) {
			st, err := conntrack.ParseTCPState(s)
			if err != nil || st == conntrack.TCPNone {
				return fmt.Errorf("%q is not a TCP state: give one or more of %s", s, strings.Join(tcpStates(), ","))
			}
			if !slices.Contains(f.States, st) {
				f.States = append(f.States, st)
			}
		}
	case "status":
		for _, s := range splitList(value) {
			switch strings.ToUpper(s) {
			case "ASSURED":
				f.Status |= Assured
			case "UNREPLIED":
				f.Status |= Unreplied
			default:
				return fmt.Errorf("%q is not a status: give ASSURED or UNREPLIED", s)
			}
		}
	case "nat":
		switch strings.ToLower(value) {
		case "", "true", "yes", "1":
			f.NAT = NATOnly
		case "false", "no", "0":
			f.NAT = NATNone
		default:
			return fmt.Errorf("%q is not true or false", value)
		}
	case "event":
		for _, s := range splitList(value) {
			switch strings.ToUpper(s) {
			case "ALL":
				for _, t := range allEvents {
					f.addEvent(t)
				}
				continue
			}
			t, ok := parseEvent(s)
			if !ok {
				return fmt.Errorf("%q is not an event type: give one or more of NEW,UPDATE,DESTROY,VERDICT (or ALL)", s)
			}
			f.addEvent(t)
		}
	default:
		return fmt.Errorf("unknown filter %q: the filters are %s", key, strings.Join(FilterKeys, ", "))
	}
	return nil
}

var allEvents = []conntrack.EventType{conntrack.EventNew, conntrack.EventUpdate, conntrack.EventDestroy, conntrack.EventVerdict}

func parseEvent(s string) (conntrack.EventType, bool) {
	for _, t := range allEvents {
		if strings.EqualFold(s, t.String()) {
			return t, true
		}
	}
	return 0, false
}

func (f *Filter) addEvent(t conntrack.EventType) {
	if !slices.Contains(f.Events, t) {
		f.Events = append(f.Events, t)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []string{""} // an empty value is an error of the caller's key
	}
	return out
}

func tcpStates() []string {
	var out []string
	for s := conntrack.TCPSynSent; s < conntrack.NumTCPStates; s++ {
		out = append(out, s.String())
	}
	return out
}

func parseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return conntrack.ProtoTCP, nil
	case "udp":
		return conntrack.ProtoUDP, nil
	case "icmp":
		return conntrack.ProtoICMP, nil
	case "icmpv6", "ipv6-icmp":
		return conntrack.ProtoICMPv6, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a protocol: give tcp, udp, icmp, icmpv6 or a number from 1 to 255", s)
	}
	return uint8(n), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix, e.g. 198.18.0.2 or 198.18.0.0/24", s)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}

// ParseFilter reads a filter from query parameters named as FilterKeys; a list key
// may repeat. Other parameters are refused unless allowed names them.
func ParseFilter(q url.Values, allowed ...string) (Filter, error) {
	var f Filter
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(allowed, k) {
			continue
		}
		if !slices.Contains(FilterKeys, k) {
			return Filter{}, fmt.Errorf("unknown query parameter %q: the filters are %s", k, strings.Join(FilterKeys, ", "))
		}
		for _, v := range q[k] {
			if err := f.Set(k, v); err != nil {
				return Filter{}, fmt.Errorf("%s=%s: %w", k, v, err)
			}
		}
	}
	return f, f.Check()
}

// Check reports a filter that can pick nothing because its fields contradict each
// other, in one sentence.
func (f Filter) Check() error {
	proto := conntrack.ProtoName(f.Proto)
	switch {
	case len(f.States) > 0 && f.Proto != 0 && f.Proto != conntrack.ProtoTCP:
		return fmt.Errorf("a state picks TCP connections, and the protocol is %s: drop one of them", proto)
	case (f.SPort != 0 || f.DPort != 0) && f.Proto != 0 && f.Proto != conntrack.ProtoTCP && f.Proto != conntrack.ProtoUDP:
		return fmt.Errorf("a port picks TCP and UDP connections, and the protocol is %s: drop one of them", proto)
	case f.Status == Assured|Unreplied:
		return errors.New("no connection is both ASSURED and UNREPLIED: give one of them")
	case f.Src.IsValid() && f.Dst.IsValid() && f.Src.Addr().Is4() != f.Dst.Addr().Is4():
		return errors.New("the source and destination are of different IP families: no connection has both")
	}
	return nil
}

// IsZero reports whether f picks every connection (its Events aside).
func (f Filter) IsZero() bool {
	f.Events = nil
	return f.ID == 0 && f.Proto == 0 && !f.Src.IsValid() && !f.Dst.IsValid() && f.SPort == 0 && f.DPort == 0 &&
		len(f.States) == 0 && f.Status == 0 && f.NAT == NATAny
}

// Query is f as query parameters, which ParseFilter reads back.
func (f Filter) Query() url.Values {
	q := url.Values{}
	for _, kv := range f.pairs() {
		q.Set(kv[0], kv[1])
	}
	return q
}

// String is f as "proto=tcp dport=80 state=ESTABLISHED", or "" for the zero Filter.
func (f Filter) String() string {
	var parts []string
	for _, kv := range f.pairs() {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, " ")
}

func (f Filter) pairs() [][2]string {
	var out [][2]string
	add := func(k, v string) { out = append(out, [2]string{k, v}) }
	if f.ID != 0 {
		add("id", strconv.FormatUint(f.ID, 10))
	}
	if f.Proto != 0 {
		add("proto", conntrack.ProtoName(f.Proto))
	}
	if f.Src.IsValid() {
		add("src", prefixString(f.Src))
	}
	if f.Dst.IsValid() {
		add("dst", prefixString(f.Dst))
	}
	if f.SPort != 0 {
		add("sport", strconv.Itoa(int(f.SPort)))
	}
	if f.DPort != 0 {
		add("dport", strconv.Itoa(int(f.DPort)))
	}
	if len(f.States) > 0 {
		var s []string
		for _, st := range f.States {
			s = append(s, st.String())
		}
		add("state", strings.Join(s, ","))
	}
	if f.Status != 0 {
		add("status", f.Status.String())
	}
	switch f.NAT {
	case NATOnly:
		add("nat", "true")
	case NATNone:
		add("nat", "false")
	}
	if len(f.Events) > 0 {
		var s []string
		for _, t := range f.Events {
			s = append(s, t.String())
		}
		add("event", strings.Join(s, ","))
	}
	return out
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Match is f as the engine's filter of connections; nil when f picks every one.
func (f Filter) Match() policy.Filter {
	if f.IsZero() {
		return nil
	}
	return f.MatchEntry
}

// MatchEntry reports whether f picks the connection e.
func (f Filter) MatchEntry(e *conntrack.EntryInfo) bool {
	if f.ID != 0 && e.ID != f.ID {
		return false
	}
	return f.matchTuple(e.Orig) && f.matchConn(e.State, e.Assured, !e.Replied) && f.matchNAT(e.Orig, e.Reply)
}

// WantsVerdicts reports whether f asks for VERDICT events.
func (f Filter) WantsVerdicts() bool { return slices.Contains(f.Events, conntrack.EventVerdict) }

// MatchEvent reports whether a subscription with filter f receives ev: its type is
// among Events (NEW, UPDATE, DESTROY when empty) and its connection matches.
func (f Filter) MatchEvent(ev *policy.Event) bool {
	if len(f.Events) == 0 {
		if ev.Type == conntrack.EventVerdict {
			return false
		}
	} else if !slices.Contains(f.Events, ev.Type) {
		return false
	}
	if f.ID != 0 && ev.ID != f.ID {
		return false
	}
	if !f.matchTuple(ev.Orig) || !f.matchNAT(ev.Orig, ev.Reply) {
		return false
	}
	return ev.Type == conntrack.EventVerdict || f.matchConn(ev.State, ev.Assured, !ev.Replied)
}

// MatchPacket reports whether f picks a packet of the flow whose original tuple is
// orig, in either direction, as a capture filter does ("tcp port 80" records both
// ways): f's protocol, addresses and ports hold for orig or for its reverse. Only
// those fields apply (CheckPacket).
func (f Filter) MatchPacket(orig conntrack.Key) bool {
	return f.matchTuple(orig) || f.matchTuple(orig.Reply())
}

// CheckPacket reports a filter that uses fields a capture filter does not have.
func (f Filter) CheckPacket() error {
	if f.ID != 0 || len(f.States) > 0 || f.Status != 0 || f.NAT != NATAny || len(f.Events) > 0 {
		return errors.New("a capture filter takes a protocol, addresses and ports (proto, src, dst, sport, dport) only")
	}
	return f.Check()
}

func (f Filter) matchTuple(k conntrack.Key) bool {
	if f.Proto != 0 && k.Proto != f.Proto {
		return false
	}
	if f.Src.IsValid() && !f.Src.Contains(k.SrcAddr()) || f.Dst.IsValid() && !f.Dst.Contains(k.DstAddr()) {
		return false
	}
	if f.SPort != 0 || f.DPort != 0 {
		if k.Proto != conntrack.ProtoTCP && k.Proto != conntrack.ProtoUDP {
			return false
		}
		if f.SPort != 0 && k.SrcPort != f.SPort || f.DPort != 0 && k.DstPort != f.DPort {
			return false
		}
	}
	return true
}

func (f Filter) matchConn(state conntrack.TCPState, assured, unreplied bool) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, state) {
		return false
	}
	if f.Status&Assured != 0 && !assured || f.Status&Unreplied != 0 && !unreplied {
		return false
	}
	return true
}

func (f Filter) matchNAT(orig, reply conntrack.Key) bool {
	switch f.NAT {
	case NATOnly:
		return isNAT(orig, reply)
	case NATNone:
		return !isNAT(orig, reply)
	}
	return true
}
