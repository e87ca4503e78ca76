package policy

import (
	"fmt"
	"strings"
	"time"
)

// Requirement is one requirement of RFC 5382 (NAT behavioural requirements for TCP),
// RFC 4787 (for UDP) or RFC 5508 (for ICMP) that a policy can break.
type Requirement struct {
	RFC   string `json:"rfc"`   // "RFC 5382"
	ID    string `json:"id"`    // "REQ-5"
	Level string `json:"level"` // MUST, RECOMMENDED
	Text  string `json:"text"`  // the requirement, abridged to one line
	// NATOnly marks requirements about mapping and filtering, checked only when NAT is
	// on. The timeout floors are checked for every policy: they are the reference any
	// middlebox on a path is held to.
	NATOnly bool `json:"nat_only,omitempty"`
}

// Violation is a requirement a policy breaks, with the values that break it.
type Violation struct {
	Requirement
	Detail string `json:"detail"` // "timeouts.tcp.established is 350s"
}

// Compliance is the outcome of Check.
type Compliance struct {
	NAT        bool          `json:"nat"`        // the policy does NAT
	Checked    []Requirement `json:"checked"`    // every requirement checked
	Violations []Violation   `json:"violations"` // those broken, in the order of Checked
	NotChecked []string      `json:"not_checked"`
}

// The floors the RFCs set.
const (
	rfc5382Established = 2*time.Hour + 4*time.Minute // RFC 5382 REQ-5
	rfc5382Transitory  = 4 * time.Minute             // RFC 5382 REQ-5
	rfc4787UDP         = 2 * time.Minute             // RFC 4787 REQ-5
	rfc4787UDPRec      = 5 * time.Minute             // RFC 4787 REQ-5, RECOMMENDED
	rfc5508ICMP        = 60 * time.Second            // RFC 5508 REQ-2
)

type rule struct {
	Requirement
	check func(p *Policy) string // the breaking values, "" if the policy complies
}

var rules = []rule{
	{Requirement{"RFC 5382", "REQ-1", "MUST", "A NAT MUST have an Endpoint-Independent Mapping behavior for TCP", true},
		func(p *Policy) string { return mappingBreak(p) }},
	{Requirement{"RFC 5382", "REQ-4", "MUST", "A NAT MUST NOT respond to an unsolicited inbound SYN for at least 6 seconds after it is received", true},
		func(p *Policy) string {
			if p.Orphan == OrphanReset || p.Orphan == OrphanICMP {
				return fmt.Sprintf("orphan is %s: an unsolicited inbound SYN is answered at once", p.Orphan)
			}
			return ""
		}},
	{Requirement{"RFC 5382", "REQ-5", "MUST", "The established connection idle-timeout MUST NOT be less than 2 hours 4 minutes", false},
		func(p *Policy) string {
			return below(rfc5382Established, durKey{"timeouts.tcp.established", p.Timeouts.TCP.Established})
		}},
	{Requirement{"RFC 5382", "REQ-5", "MUST", "The transitory connection idle-timeout MUST NOT be less than 4 minutes", false},
		func(p *Policy) string {
			t := &p.Timeouts.TCP
			return below(rfc5382Transitory,
				durKey{"syn_sent", t.SynSent}, durKey{"syn_recv", t.SynRecv}, durKey{"fin_wait", t.FinWait},
				durKey{"close_wait", t.CloseWait}, durKey{"last_ack", t.LastAck}, durKey{"time_wait", t.TimeWait},
				durKey{"syn_sent2", t.SynSent2})
		}},
	{Requirement{"RFC 4787", "REQ-1", "MUST", "A NAT MUST have an Endpoint-Independent Mapping behavior", true},
		func(p *Policy) string { return mappingBreak(p) }},
	{Requirement{"RFC 4787", "REQ-5", "MUST", "A NAT UDP mapping timer MUST NOT expire in less than two minutes", false},
		func(p *Policy) string {
			return below(rfc4787UDP, durKey{"timeouts.udp", p.Timeouts.UDP}, durKey{"timeouts.udp_stream", p.Timeouts.UDPStream})
		}},
	{Requirement{"RFC 4787", "REQ-5", "RECOMMENDED", "A default NAT UDP mapping timer of five minutes or more is RECOMMENDED", false},
		func(p *Policy) string {
			return below(rfc4787UDPRec, durKey{"timeouts.udp", p.Timeouts.UDP}, durKey{"timeouts.udp_stream", p.Timeouts.UDPStream})
		}},
	{Requirement{"RFC 4787", "REQ-6", "MUST", "The NAT mapping refresh direction MUST have a NAT outbound refresh behavior of True", false},
		func(p *Policy) string { return "" }}, // every refresh rule counts outbound UDP
	{Requirement{"RFC 4787", "REQ-8", "RECOMMENDED", "Endpoint-Independent Filtering is RECOMMENDED (Address-Dependent if stringency matters more)", true},
		func(p *Policy) string {
			if p.NAT.Filtering == AddressAndPortDependent {
				return "nat.filtering is address-and-port-dependent"
			}
			return ""
		}},
	{Requirement{"RFC 5508", "REQ-1", "MUST", "A NAT MUST permit ICMP Queries and their responses initiated from a private host", true},
		func(p *Policy) string { return "" }}, // the engine always tracks outbound echo
	{Requirement{"RFC 5508", "REQ-2", "MUST", "An ICMP Query session timer MUST NOT expire in less than 60 seconds", false},
		func(p *Policy) string { return below(rfc5508ICMP, durKey{"timeouts.icmp", p.Timeouts.ICMP}) }},
	{Requirement{"RFC 5508", "REQ-10", "MUST", "A NAT MUST NOT end a mapping or refresh it because of an ICMP error", false},
		func(p *Policy) string { return "" }}, // ICMP errors never refresh nor end an entry
}

// notChecked are requirements the model has nothing to say about.
var notChecked = []string{
	"RFC 5382 REQ-8 and RFC 4787 REQ-9 (hairpinning): the lab has no hairpin path",
	"RFC 4787 REQ-2, REQ-3, REQ-4 (IP address pooling, port assignment, port parity): one outside address, ports allocated in sequence",
	"RFC 5382 REQ-2, REQ-3 (TCP simultaneous open, unknown TCP options): not modelled",
}

func mappingBreak(p *Policy) string {
	if p.NAT.Mapping != EndpointIndependent {
		return "nat.mapping is " + p.NAT.Mapping.String()
	}
	return ""
}

type durKey struct {
	key string
	d   Duration
}

// below lists the durations under floor, "" if none.
func below(floor time.Duration, ds ...durKey) string {
	var parts []string
	for _, d := range ds {
		if time.Duration(d.d) < floor {
			parts = append(parts, d.key+" "+d.d.String())
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + " (floor " + formatFloor(floor) + ")"
}

func formatFloor(d time.Duration) string {
	if d%time.Minute == 0 && d >= 2*time.Minute {
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if h > 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dm", m)
	}
	return formatDuration(d)
}

// Check lists the RFC 5382, RFC 4787 and RFC 5508 requirements p breaks. Mapping and
// filtering requirements are checked only when p does NAT; the timeout floors always.
func Check(p Policy) Compliance {
	c := Compliance{NAT: p.NAT.Enabled, NotChecked: notChecked, Violations: []Violation{}}
	for _, r := range rules {
		if r.NATOnly && !p.NAT.Enabled {
			continue
		}
		c.Checked = append(c.Checked, r.Requirement)
		if d := r.check(&p); d != "" {
			c.Violations = append(c.Violations, Violation{Requirement: r.Requirement, Detail: d})
		}
	}
	return c
}

// String is the violation in one line: "RFC 5382 REQ-5 MUST: text; detail".
func (v Violation) String() string {
	return fmt.Sprintf("%s %s %s: %s; here %s", v.RFC, v.ID, v.Level, v.Text, v.Detail)
}
