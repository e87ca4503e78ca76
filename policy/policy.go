package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// Policy is what the gateway does with packets, as plain data. The zero value is not
// usable; start from Default or Load.
type Policy struct {
	// Timeouts are the idle timeouts per protocol and TCP state.
	Timeouts Timeouts `yaml:"timeouts" json:"timeouts"`
	// TCPMaxRetrans is how many repeats of a TCP segment without an answer
	// give the connection timeouts.tcp.max_retrans (Linux
	// nf_conntrack_tcp_max_retrans, 3), from 1 to 255.
	TCPMaxRetrans int `yaml:"tcp_max_retrans" json:"tcp_max_retrans"`
	// Capacity is the most connections the table holds (Linux nf_conntrack_max).
	Capacity int `yaml:"capacity" json:"capacity"`
	// OnFull is what happens to a new connection when the table is full.
	OnFull OnFull `yaml:"on_full" json:"on_full"`
	// Refresh says which packets restart a connection's idle timer.
	Refresh Refresh `yaml:"refresh" json:"refresh"`
	// Orphan is what a packet of no live connection gets when it may not open one:
	// a TCP segment other than a SYN, or a UDP datagram toward the inside.
	Orphan Orphan `yaml:"orphan" json:"orphan"`
	// Invalid is what a packet Linux's conntrack calls invalid gets: one that does
	// not fit its connection's state (an RST out of window, an ACK in SYN_SENT), a
	// TCP flag combination no stack sends (SYN+FIN), and, under orphan: pickup,
	// one of no connection that cannot open one (a FIN after the idle expiry).
	// accept mirrors Linux without an INVALID rule (they pass untracked and
	// untranslated); drop mirrors `ct state invalid drop`.
	Invalid Invalid `yaml:"invalid" json:"invalid"`
	// ResetOnExpire sends a RST to both ends of an ESTABLISHED TCP connection at the
	// moment its idle timeout fires (Azure Load Balancer with TCP reset enabled).
	ResetOnExpire bool `yaml:"reset_on_expire" json:"reset_on_expire"`
	// MaxConnsPerSource limits live connections opened by one inside address; the
	// connection over the limit is refused with a RST (ICMP for UDP). 0 means no limit.
	MaxConnsPerSource int `yaml:"max_conns_per_source" json:"max_conns_per_source"`
	// SourceCheck drops a packet whose source is not in the networks of the side it
	// arrives on (reason spoofed), as Linux's strict reverse path filter (rp_filter=1)
	// does. Turn it off to model asymmetric paths; martians and destinations with no
	// route are dropped either way. It acts only where the engine knows the networks
	// (Engine.SetNetworks).
	SourceCheck bool `yaml:"source_check" json:"source_check"`
	// DecrementTTL lowers the IPv4 TTL / IPv6 Hop Limit of every forwarded packet
	// by one, as a router does, and answers a packet that arrives with 1 (or 0)
	// with ICMP time exceeded instead of forwarding it: the gateway is a hop for
	// traceroute. false makes it a bump in the wire.
	DecrementTTL bool `yaml:"decrement_ttl" json:"decrement_ttl"`
	// NAT is source NAT of the inside network to one outside address.
	NAT NAT `yaml:"nat" json:"nat"`
	// VerdictEvents emits one VERDICT event per packet to every event subscriber
	// (opt-in: it is a lot of events). One subscriber can ask for them alone
	// (Engine.SubscribeWith, `idlegate ct events --verdicts`) without it.
	VerdictEvents bool `yaml:"verdict_events" json:"verdict_events"`
}

// Timeouts are idle timeouts. Defaults are Linux's nf_conntrack sysctls
// (Documentation/networking/nf_conntrack-sysctl.rst).
type Timeouts struct {
	TCP TCPTimeouts `yaml:"tcp" json:"tcp"`
	// UDP is for a flow seen in one direction only (nf_conntrack_udp_timeout, 30 s).
	UDP Duration `yaml:"udp" json:"udp"`
	// UDPStream is for a flow that has seen replies (nf_conntrack_udp_timeout_stream, 120 s).
	UDPStream Duration `yaml:"udp_stream" json:"udp_stream"`
	// ICMP is for an echo exchange (nf_conntrack_icmp_timeout, 30 s).
	ICMP Duration `yaml:"icmp" json:"icmp"`
	// Generic is for other protocols (nf_conntrack_generic_timeout, 600 s).
	Generic Duration `yaml:"generic" json:"generic"`
}

// TCPTimeouts are per TCP state, named as Linux names the states.
type TCPTimeouts struct {
	SynSent     Duration `yaml:"syn_sent" json:"syn_sent"`       // nf_conntrack_tcp_timeout_syn_sent 120 s
	SynRecv     Duration `yaml:"syn_recv" json:"syn_recv"`       // nf_conntrack_tcp_timeout_syn_recv 60 s
	Established Duration `yaml:"established" json:"established"` // nf_conntrack_tcp_timeout_established 432000 s
	FinWait     Duration `yaml:"fin_wait" json:"fin_wait"`       // nf_conntrack_tcp_timeout_fin_wait 120 s
	CloseWait   Duration `yaml:"close_wait" json:"close_wait"`   // nf_conntrack_tcp_timeout_close_wait 60 s
	LastAck     Duration `yaml:"last_ack" json:"last_ack"`       // nf_conntrack_tcp_timeout_last_ack 30 s
	TimeWait    Duration `yaml:"time_wait" json:"time_wait"`     // nf_conntrack_tcp_timeout_time_wait 120 s
	Close       Duration `yaml:"close" json:"close"`             // nf_conntrack_tcp_timeout_close 10 s
	SynSent2    Duration `yaml:"syn_sent2" json:"syn_sent2"`     // simultaneous open; Linux uses syn_sent's 120 s
	// Unacknowledged caps the timeout while data is in flight unacknowledged, and
	// of a picked-up connection nobody answered yet
	// (nf_conntrack_tcp_timeout_unacknowledged 300 s).
	Unacknowledged Duration `yaml:"unacknowledged" json:"unacknowledged"`
	// MaxRetrans caps the timeout once a segment was repeated tcp_max_retrans
	// times, or after a zero window (nf_conntrack_tcp_timeout_max_retrans 300 s).
	MaxRetrans Duration `yaml:"max_retrans" json:"max_retrans"`
}

// NAT configures source NAT. Mapping and filtering are named as RFC 4787 names them.
type NAT struct {
	// Enabled turns NAT on: connections opened from the inside leave with the outside
	// address and an allocated port; the mapping lives and dies with its connection.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Outside holds one outside address per IP family (an IPv4 and/or an IPv6 one).
	Outside []netip.Addr `yaml:"outside" json:"outside"`
	// Mapping is endpoint-independent (RFC 4787 REQ-1, the default) or
	// address-and-port-dependent (a symmetric NAT).
	Mapping Behaviour `yaml:"mapping" json:"mapping"`
	// Filtering is which outside endpoints may send to a mapping: endpoint-independent,
	// address-dependent, or address-and-port-dependent (the default, RFC 4787 REQ-8's
	// most restrictive choice).
	Filtering Behaviour `yaml:"filtering" json:"filtering"`
	// Ports is the outside port range, "1024-65535" by default.
	Ports PortRange `yaml:"ports" json:"ports"`
}

// Default is a Linux stateful firewall: nf_conntrack's timeouts and state machine, a
// 262144-entry table with early drop, any packet refreshes, and the ruleset of a
// firewall (`ct state established,related accept; ct state new tcp flags syn
// accept; drop`): orphans dropped silently and invalid packets dropped, where the
// kernel without a ruleset picks a mid-stream packet up (nf_conntrack_tcp_loose=1)
// and passes invalid ones untracked; the linux-conntrack profile is that. Strict
// source check, the TTL decremented, no NAT.
func Default() Policy {
	return Policy{
		Timeouts:      fromConntrack(conntrack.DefaultTimeouts()),
		TCPMaxRetrans: conntrack.DefaultMaxRetrans,
		Capacity:      262144, // nf_conntrack_max on a machine above 4 GiB of RAM
		OnFull:        OnFull(conntrack.EarlyDrop),
		Refresh:       Refresh(conntrack.RefreshAny),
		Orphan:        OrphanDrop,
		Invalid:       InvalidDrop,
		SourceCheck:   true,
		DecrementTTL:  true,
		NAT: NAT{
			Mapping:   EndpointIndependent,
			Filtering: AddressAndPortDependent,
			Ports:     PortRange{Lo: 1024, Hi: 65535},
		},
	}
}

// clone is a copy that shares no slice with p.
func (p Policy) clone() Policy {
	p.NAT.Outside = append([]netip.Addr(nil), p.NAT.Outside...)
	return p
}

// timeoutFields ties each policy timeout to its YAML key and to the table's
// timeout it sets: one list for converting, defaulting, validating and scaling.
var timeoutFields = []struct {
	key   string
	field func(*Timeouts) *Duration
	table func(*conntrack.Timeouts) *time.Duration
}{
	{"timeouts.tcp.syn_sent", func(t *Timeouts) *Duration { return &t.TCP.SynSent }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPSynSent] }},
	{"timeouts.tcp.syn_recv", func(t *Timeouts) *Duration { return &t.TCP.SynRecv }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPSynRecv] }},
	{"timeouts.tcp.established", func(t *Timeouts) *Duration { return &t.TCP.Established }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPEstablished] }},
	{"timeouts.tcp.fin_wait", func(t *Timeouts) *Duration { return &t.TCP.FinWait }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPFinWait] }},
	{"timeouts.tcp.close_wait", func(t *Timeouts) *Duration { return &t.TCP.CloseWait }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPCloseWait] }},
	{"timeouts.tcp.last_ack", func(t *Timeouts) *Duration { return &t.TCP.LastAck }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPLastAck] }},
	{"timeouts.tcp.time_wait", func(t *Timeouts) *Duration { return &t.TCP.TimeWait }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPTimeWait] }},
	{"timeouts.tcp.close", func(t *Timeouts) *Duration { return &t.TCP.Close }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPClose] }},
	{"timeouts.tcp.syn_sent2", func(t *Timeouts) *Duration { return &t.TCP.SynSent2 }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCP[conntrack.TCPSynSent2] }},
	{"timeouts.tcp.unacknowledged", func(t *Timeouts) *Duration { return &t.TCP.Unacknowledged }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCPUnacknowledged }},
	{"timeouts.tcp.max_retrans", func(t *Timeouts) *Duration { return &t.TCP.MaxRetrans }, func(c *conntrack.Timeouts) *time.Duration { return &c.TCPMaxRetrans }},
	{"timeouts.udp", func(t *Timeouts) *Duration { return &t.UDP }, func(c *conntrack.Timeouts) *time.Duration { return &c.UDPUnreplied }},
	{"timeouts.udp_stream", func(t *Timeouts) *Duration { return &t.UDPStream }, func(c *conntrack.Timeouts) *time.Duration { return &c.UDPReplied }},
	{"timeouts.icmp", func(t *Timeouts) *Duration { return &t.ICMP }, func(c *conntrack.Timeouts) *time.Duration { return &c.ICMP }},
	{"timeouts.generic", func(t *Timeouts) *Duration { return &t.Generic }, func(c *conntrack.Timeouts) *time.Duration { return &c.Generic }},
}

// ConntrackTimeouts converts the policy's timeouts to the table's.
func (t Timeouts) ConntrackTimeouts() conntrack.Timeouts {
	var c conntrack.Timeouts
	for _, f := range timeoutFields {
		*f.table(&c) = time.Duration(*f.field(&t))
	}
	// No entry is ever in NONE; Linux keeps its timeout equal to SYN_SENT's.
	c.TCP[conntrack.TCPNone] = c.TCP[conntrack.TCPSynSent]
	return c
}

// fromConntrack is the policy form of the table's timeouts.
func fromConntrack(c conntrack.Timeouts) Timeouts {
	var t Timeouts
	for _, f := range timeoutFields {
		*f.field(&t) = Duration(*f.table(&c))
	}
	return t
}

// Duration is a time.Duration written as "350s", "4m", "2h4m" or "5d" in YAML and JSON.
type Duration time.Duration

// ParseDuration accepts Go durations plus a "d" (24 h) suffix. A bare number is
// refused: its unit would be a guess.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration; write one like 350s or 4m")
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("duration %q has no unit; write %ss", s, s)
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q; write one like 5d, 350s or 4m", s)
		}
		return Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q; write one like 350s, 4m or 2h4m", s)
	}
	return Duration(d), nil
}

func (d Duration) String() string { return formatDuration(time.Duration(d)) }

// formatDuration prints whole seconds without Go's trailing "0m0s" noise.
func formatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Orphan is the verdict for a packet of no live connection that may not open one.
type Orphan uint8

const (
	// OrphanDrop drops silently: the sender retransmits into a black hole.
	OrphanDrop Orphan = iota
	// OrphanReset answers a TCP segment with a RST and a UDP datagram with ICMP
	// administratively prohibited.
	OrphanReset
	// OrphanICMP answers with ICMP (ICMPv6) administratively prohibited.
	OrphanICMP
	// OrphanPickup creates a new entry mid-stream (Linux nf_conntrack_tcp_loose=1).
	OrphanPickup
)

var orphanNames = []string{"drop", "reset", "icmp", "pickup"}

func (o Orphan) String() string { return enumName(orphanNames, int(o)) }

func (o Orphan) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func (o *Orphan) UnmarshalText(b []byte) error {
	i, err := enumParse("orphan", orphanNames, string(b))
	*o = Orphan(i)
	return err
}

// Invalid is the verdict for a packet Linux's conntrack calls invalid.
type Invalid uint8

const (
	// InvalidDrop drops it: `ct state invalid drop`, or a firewall whose forward
	// chain accepts only established, related and new connections.
	InvalidDrop Invalid = iota
	// InvalidAccept forwards it as it is, untracked (not translated, no entry
	// changed): Linux with conntrack and no rule about invalid packets.
	InvalidAccept
)

var invalidNames = []string{"drop", "accept"}

func (v Invalid) String() string { return enumName(invalidNames, int(v)) }

func (v Invalid) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v *Invalid) UnmarshalText(b []byte) error {
	i, err := enumParse("invalid", invalidNames, string(b))
	*v = Invalid(i)
	return err
}

// OnFull wraps conntrack.OnFull, whose names it uses, with the policy's messages.
type OnFull conntrack.OnFull

func (o OnFull) String() string { return conntrack.OnFull(o).String() }

func (o OnFull) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func (o *OnFull) UnmarshalText(b []byte) error {
	v, err := conntrack.ParseOnFull(string(b))
	if err != nil {
		return fmt.Errorf("on_full %q is not one of %s", string(b), namesOf[conntrack.OnFull](conntrack.NumOnFull))
	}
	*o = OnFull(v)
	return nil
}

// Refresh wraps conntrack.Refresh, whose names it uses, with the policy's messages.
type Refresh conntrack.Refresh

func (r Refresh) String() string { return conntrack.Refresh(r).String() }

func (r Refresh) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r *Refresh) UnmarshalText(b []byte) error {
	v, err := conntrack.ParseRefresh(string(b))
	if err != nil {
		return fmt.Errorf("refresh %q is not one of %s", string(b), namesOf[conntrack.Refresh](conntrack.NumRefresh))
	}
	*r = Refresh(v)
	return nil
}

// namesOf lists the names of the n values of an enum, for messages.
func namesOf[E interface {
	~uint8
	String() string
}](n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = E(i).String()
	}
	return strings.Join(names, ", ")
}

// Behaviour is an RFC 4787 mapping or filtering behaviour.
type Behaviour uint8

const (
	EndpointIndependent Behaviour = iota
	AddressDependent
	AddressAndPortDependent
)

var behaviourNames = []string{"endpoint-independent", "address-dependent", "address-and-port-dependent"}

func (b Behaviour) String() string { return enumName(behaviourNames, int(b)) }

func (b Behaviour) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

func (b *Behaviour) UnmarshalText(t []byte) error {
	i, err := enumParse("behaviour", behaviourNames, string(t))
	*b = Behaviour(i)
	return err
}

// PortRange is an inclusive range of outside ports, written "1024-65535".
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r *PortRange) UnmarshalText(b []byte) error {
	lo, hi, ok := strings.Cut(string(b), "-")
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || l == 0 || l > h {
		return fmt.Errorf("port range %q is not like 1024-65535", string(b))
	}
	r.Lo, r.Hi = uint16(l), uint16(h)
	return nil
}

func enumName(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return "unknown(" + strconv.Itoa(i) + ")"
}

func enumParse(what string, names []string, s string) (int, error) {
	for i, n := range names {
		if n == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s %q is not one of %s", what, s, strings.Join(names, ", "))
}

// outside returns the outside address of addr's family.
func (n *NAT) outside(is4 bool) (netip.Addr, bool) {
	for _, a := range n.Outside {
		if a.Is4() == is4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// fieldError is a validation failure of one key, located by its dotted path.
type fieldError struct {
	path string
	msg  string
}

func (e *fieldError) Error() string { return e.path + ": " + e.msg }

// Validate reports the first key whose value is not usable.
func (p *Policy) Validate() error {
	for _, f := range timeoutFields {
		if d := *f.field(&p.Timeouts); d <= 0 {
			return &fieldError{f.key, fmt.Sprintf("timeout must be positive, got %s", time.Duration(d))}
		}
	}
	if p.Capacity <= 0 {
		return &fieldError{"capacity", fmt.Sprintf("must be at least 1, got %d", p.Capacity)}
	}
	if p.Capacity > conntrack.MaxCapacity {
		return &fieldError{"capacity", fmt.Sprintf("must be at most %d connections (the table's limit), got %d", conntrack.MaxCapacity, p.Capacity)}
	}
	if p.TCPMaxRetrans < 1 || p.TCPMaxRetrans > 255 {
		return &fieldError{"tcp_max_retrans", fmt.Sprintf("must be from 1 to 255 (Linux's default is 3), got %d", p.TCPMaxRetrans)}
	}
	if p.MaxConnsPerSource < 0 {
		return &fieldError{"max_conns_per_source", fmt.Sprintf("must be 0 (no limit) or more, got %d", p.MaxConnsPerSource)}
	}
	if p.NAT.Enabled {
		if len(p.NAT.Outside) == 0 {
			return &fieldError{"nat.outside", "NAT needs an outside address, e.g. outside: [198.19.0.1, \"fd00:19::1\"]"}
		}
		var n4, n6 int
		for _, a := range p.NAT.Outside {
			if a.Is4() || a.Is4In6() {
				n4++
			} else {
				n6++
			}
		}
		if n4 > 1 || n6 > 1 {
			return &fieldError{"nat.outside", "give at most one IPv4 and one IPv6 outside address"}
		}
		if p.NAT.Mapping == AddressDependent {
			return &fieldError{"nat.mapping", "address-dependent mapping is not modelled; use endpoint-independent or address-and-port-dependent"}
		}
		if p.NAT.Ports.Lo == 0 || p.NAT.Ports.Lo > p.NAT.Ports.Hi {
			return &fieldError{"nat.ports", "port range must be like 1024-65535"}
		}
	}
	return nil
}
