// Package capture writes and reads idlegate's pcapng: what crossed the gateway (or, for
// replay --write, what would have crossed the box), with the gateway's word on each
// packet. It is the one owner of that format: the gateway records through File,
// replay writes through Writer and reads through Reader, and nothing else builds or
// parses the comments.
//
// The format is plain pcapng, readable by tcpdump, tshark and gopacket: one section
// whose application is "idlegate" (or "idlegate replay") and whose comment says what
// the interfaces are; interface 0 "inside" (the client side, policy.Inside) and 1
// "outside" (the server side, policy.Outside), both link type raw IP (101) with
// nanosecond timestamps and no snap length; then one enhanced packet block per record,
// with one comment, whose text is one of (see Kind):
//
//	forward tracked outbound           a packet the gateway read, on the interface it arrived on
//	forward tracked inbound keepalive  the same, for a TCP keepalive probe
//	translated                         the rewritten (NAT) copy of a forwarded packet, on the interface it left by
//	injected reset orphan              a packet the gateway originated in answer to a packet it read
//	injected reset reset_on_expire     a RST the gateway sent when a connection's timeout fired
//
// Captures written before keepalive probes were named read as they were written.
package capture

import (
	"strconv"

	"github.com/idlegate/idlegate/policy"
)

// Kind is what a record of an idlegate capture is.
type Kind uint8

const (
	// None: the record has no comment.
	None Kind = iota
	// Arrival: a packet the gateway read, recorded as it arrived on the interface it
	// came in by, with its verdict, reason, direction and whether it was a keepalive
	// probe: "<verdict> <reason> <direction>[ keepalive]".
	Arrival
	// Translated: the rewritten copy of a forwarded packet (NAT), recorded on the
	// interface it left by right after its Arrival: "translated".
	Translated
	// Injected: a packet the gateway originated (a RST, an ICMP error) in answer to a
	// packet it read, recorded on the interface it left by, with the verdict and reason
	// of the packet it answered: "injected <verdict> <reason>".
	Injected
	// ExpiryReset: a RST the gateway sent to one end of a connection when its idle
	// timeout fired (reset_on_expire): "injected reset reset_on_expire". Its Verdict is
	// policy.Reset.
	ExpiryReset
	// Foreign: a comment idlegate does not write (another tool's, a later version's),
	// or any comment in a capture that is not idlegate's; Record.Text has it.
	Foreign
)

var kindNames = [...]string{"none", "arrival", "translated", "injected", "expiry-reset", "foreign"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Comment is the gateway's word on one record, as typed values. Fields a Kind does not
// use are zero. Its text is String; Reader turns the text back into a Comment.
type Comment struct {
	Kind      Kind
	Verdict   policy.Verdict // Arrival, Injected (the verdict of the packet answered); Reset for ExpiryReset
	Reason    policy.Reason  // Arrival, Injected
	Dir       policy.Dir     // Arrival
	Keepalive bool           // Arrival: the packet was a TCP keepalive probe
}

// Texts of the comments that carry no values.
const (
	translatedText  = "translated"
	expiryResetText = "injected reset reset_on_expire"
	injectedPrefix  = "injected "
	keepaliveSuffix = " keepalive"
)

// String is the comment's text as written to a capture; "" (no comment) for None and
// Foreign. It allocates nothing for the verdicts and reasons policy defines.
func (c Comment) String() string {
	v, r, d, ka := int(c.Verdict), int(c.Reason), int(c.Dir), 0
	if c.Keepalive {
		ka = 1
	}
	known := v < numVerdicts && r < numReasons
	switch c.Kind {
	case Arrival:
		if known && d < 2 {
			return arrivalTexts[v][r][d][ka]
		}
		s := c.Verdict.String() + " " + c.Reason.String() + " " + c.Dir.String()
		if c.Keepalive {
			s += keepaliveSuffix
		}
		return s
	case Translated:
		return translatedText
	case Injected:
		if known {
			return injectedTexts[v][r]
		}
		return injectedPrefix + c.Verdict.String() + " " + c.Reason.String()
	case ExpiryReset:
		return expiryResetText
	}
	return ""
}

// The number of verdicts and of reasons policy defines.
const (
	numVerdicts = len(policy.Stats{}.Verdicts)
	numReasons  = len(policy.Stats{}.Reasons)
)

// arrivalTexts[verdict][reason][dir][keepalive] and injectedTexts[verdict][reason] are
// the comments, built once so that recording allocates none; comments maps every text
// back to its Comment.
var (
	arrivalTexts  [numVerdicts][numReasons][2][2]string
	injectedTexts [numVerdicts][numReasons]string
	comments      = map[string]Comment{}
)

func init() {
	for v := range numVerdicts {
		for r := range numReasons {
			vr := policy.Verdict(v).String() + " " + policy.Reason(r).String()
			for d := range 2 {
				for ka := range 2 {
					c := Comment{Kind: Arrival, Verdict: policy.Verdict(v), Reason: policy.Reason(r), Dir: policy.Dir(d), Keepalive: ka == 1}
					s := vr + " " + policy.Dir(d).String()
					if c.Keepalive {
						s += keepaliveSuffix
					}
					arrivalTexts[v][r][d][ka] = s
					comments[s] = c
				}
			}
			injectedTexts[v][r] = injectedPrefix + vr
			comments[injectedTexts[v][r]] = Comment{Kind: Injected, Verdict: policy.Verdict(v), Reason: policy.Reason(r)}
		}
	}
	comments[translatedText] = Comment{Kind: Translated}
	comments[expiryResetText] = Comment{Kind: ExpiryReset, Verdict: policy.Reset}
}

// parseComment is the Comment of an idlegate comment text: None for "", Foreign for a
// text idlegate does not write. It allocates nothing.
func parseComment(s string) Comment {
	if s == "" {
		return Comment{}
	}
	if c, ok := comments[s]; ok {
		return c
	}
	return Comment{Kind: Foreign}
}
