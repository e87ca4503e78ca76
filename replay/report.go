package replay

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// Report is what a replay found.
type Report struct {
	Capture   string          `json:"capture"`
	Records   int             `json:"records"`   // records read
	Packets   int             `json:"packets"`   // IP packets replayed
	NotIP     int             `json:"not_ip"`    // frames without IPv4 or IPv6 (ARP, ...)
	Malformed int             `json:"malformed"` // IP packets that do not decode
	Skipped   int             `json:"skipped"`   // idlegate's "translated" and "injected" records
	Start     time.Time       `json:"start"`
	Duration  float64         `json:"duration_s"`
	Direction DirectionSource `json:"direction"`
	Scale     float64         `json:"time_scale"`
	Flows     []Flow          `json:"flows"`
	Profiles  []ProfileResult `json:"profiles"`
	// Summary is one sentence: "this capture survives linux-conntrack and gcp-cloud-nat,
	// breaks on aws-nat-gateway at packet 1831".
	Summary string `json:"summary"`
}

// Flow is one flow of the capture.
type Flow struct {
	ID          int     `json:"id"`
	Proto       string  `json:"proto"`
	Inside      string  `json:"inside"`  // the inside (client) end
	Outside     string  `json:"outside"` // the outside (server) end
	Packets     int     `json:"packets"`
	FirstPacket int     `json:"first_packet"`
	First       float64 `json:"first_s"` // since the capture's first packet
	Last        float64 `json:"last_s"`
	InsideBy    string  `json:"inside_by"` // how the inside end was told
	Synthetic   bool    `json:"synthetic_opening,omitempty"`
}

func (f Flow) String() string {
	if f.Proto == "icmp" || f.Proto == "icmpv6" {
		in, out := f.Inside, f.Outside
		if i := strings.LastIndexByte(in, ':'); i > 0 {
			in, out = strings.Trim(in[:i], "[]"), strings.Trim(out[:strings.LastIndexByte(out, ':')], "[]")
			return fmt.Sprintf("%s %s -> %s id %s", f.Proto, in, out, f.Inside[i+1:])
		}
	}
	return f.Proto + " " + f.Inside + " -> " + f.Outside
}

// ProfileResult is what one profile did to the capture.
type ProfileResult struct {
	Name string `json:"name"`
	// Established is the TCP ESTABLISHED timeout as replayed, with the real one when
	// scaled.
	Established string       `json:"tcp_established"`
	Flows       []FlowResult `json:"flows"`
	Survived    int          `json:"survived"`
	Broken      int          `json:"broken"`
	// FirstBreak is the earliest broken flow.
	FirstBreak *FlowResult    `json:"first_break,omitempty"`
	Verdicts   map[string]int `json:"verdicts"`
	Dropped    map[string]int `json:"not_forwarded_by_reason"`
	Injected   int            `json:"injected"`
	EventsLost uint64         `json:"events_lost,omitempty"`
}

// FlowResult is one flow's outcome under one profile.
type FlowResult struct {
	Flow    int     `json:"flow"`
	Outcome Outcome `json:"outcome"`
	// Packet is the record number of the first hurt packet (0 for reset-at-expiry).
	Packet int `json:"packet,omitempty"`
	// Time is when, since the capture's first packet: the hurt packet, or the deadline.
	Time float64 `json:"time_s,omitempty"`
	// Idle is how long the flow had been silent before that packet.
	Idle float64 `json:"idle_s,omitempty"`
	// Timeout is the timeout that fired, as replayed (scaled), and RealTimeout the real one.
	Timeout     float64 `json:"timeout_s,omitempty"`
	RealTimeout float64 `json:"real_timeout_s,omitempty"`
	Verdict     string  `json:"verdict,omitempty"`
	Reason      string  `json:"reason,omitempty"`
	Dir         string  `json:"direction,omitempty"`
	Note        string  `json:"note,omitempty"`
}

// Broken reports whether the flow did not survive.
func (r FlowResult) Broken() bool { return r.Outcome != Survived }

func (rp *replayer) report(name string) *Report {
	r := &Report{
		Capture: name, Records: rp.records, Packets: rp.packets, NotIP: rp.nonIP, Malformed: rp.malformed,
		Skipped: rp.skipped, Start: rp.start, Duration: rp.end.Sub(rp.start).Seconds(), Direction: rp.dirSource,
		Scale: rp.scale, Flows: []Flow{},
	}
	if r.Direction == "" {
		r.Direction = DirInferred
	}
	for i, f := range rp.flows {
		r.Flows = append(r.Flows, Flow{
			ID: i + 1, Proto: conntrack.ProtoName(f.proto), Inside: f.inside.String(), Outside: f.outside.String(),
			Packets: f.packets, FirstPacket: f.firstPkt, First: f.first.Sub(rp.start).Seconds(), Last: f.last.Sub(rp.start).Seconds(),
			InsideBy: f.how, Synthetic: f.synthetic,
		})
	}
	for _, l := range rp.lanes {
		pr := ProfileResult{Name: l.name, Flows: []FlowResult{}, Verdicts: map[string]int{}, Dropped: map[string]int{},
			Injected: l.injected, EventsLost: l.lost + l.sub.Dropped(),
			Established: policy.FormatScaled(time.Duration(l.real.Timeouts.TCP.Established), rp.scale)}
		for v, n := range l.verdicts {
			if n > 0 {
				pr.Verdicts[policy.Verdict(v).String()] = n
			}
		}
		for reason, n := range l.reasons {
			if n > 0 {
				pr.Dropped[policy.Reason(reason).String()] = n
			}
		}
		for i := range rp.flows {
			lf := l.flow(int32(i))
			fr := FlowResult{Flow: i + 1, Outcome: lf.outcome, Note: lf.note}
			if lf.set {
				fr.Packet, fr.Time, fr.Idle = lf.pkt, lf.at.Sub(rp.start).Seconds(), lf.idle.Seconds()
				fr.Verdict, fr.Reason, fr.Dir = lf.verdict.String(), lf.reason.String(), lf.dir.String()
				if lf.outcome == ResetAtExpiry {
					// The box reset both ends; no packet of the flow was involved.
					fr.Reason, fr.Dir = "reset_on_expire", ""
				}
				if lf.timeout > 0 {
					fr.Timeout = lf.timeout.Seconds()
					fr.RealTimeout = fr.Timeout / rp.scale
				}
				pr.Broken++
				if pr.FirstBreak == nil || fr.Time < pr.FirstBreak.Time || fr.Time == pr.FirstBreak.Time && fr.Packet < pr.FirstBreak.Packet {
					first := fr
					pr.FirstBreak = &first
				}
			} else {
				pr.Survived++
			}
			pr.Flows = append(pr.Flows, fr)
		}
		r.Profiles = append(r.Profiles, pr)
	}
	r.Summary = r.sentence()
	return r
}

// sentence sums the replay up in one sentence.
func (r *Report) sentence() string {
	var ok, broke []string
	for _, p := range r.Profiles {
		if p.FirstBreak == nil {
			ok = append(ok, p.Name)
			continue
		}
		fb := p.FirstBreak
		where := fmt.Sprintf("at packet %d", fb.Packet)
		if fb.Outcome == ResetAtExpiry {
			where = fmt.Sprintf("at %s (RST at expiry)", fmtOffset(seconds(fb.Time)))
		}
		s := p.Name + " " + where
		if p.Broken > 1 {
			s += fmt.Sprintf(" (%d flows)", p.Broken)
		}
		broke = append(broke, s)
	}
	switch {
	case len(r.Flows) == 0:
		return "this capture has no TCP, UDP or ICMP echo flow to replay"
	case len(broke) == 0:
		return "this capture survives " + andList(ok)
	case len(ok) == 0:
		return "this capture breaks on " + andList(broke)
	}
	return "this capture survives " + andList(ok) + ", breaks on " + andList(broke)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func andList(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// fmtDur prints a duration in seconds with up to millisecond precision: "7.002s", "350s".
func fmtDur(d time.Duration) string {
	s := strconv.FormatFloat(d.Round(time.Millisecond).Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}

func fmtOffset(d time.Duration) string { return "+" + fmtDur(d) }

// scaledDur prints a duration measured under the time scale with its real value.
func (r *Report) scaledDur(sec float64) string {
	d := seconds(sec).Round(time.Millisecond)
	if r.Scale == 1 {
		return fmtDur(d)
	}
	return fmtDur(d) + " (real " + fmtDur(seconds(sec/r.Scale).Round(time.Millisecond)) + ")"
}

// maxListed is how many flows the text output lists without --all when some broke.
const maxListed = 50

// Text writes the report for people: a table per flow (one profile) or a matrix of
// flows x profiles, then the summary sentence. Without all, a capture of more than
// maxListed flows lists only the flows some profile broke.
func (r *Report) Text(w io.Writer, all bool) {
	dir := map[DirectionSource]string{
		DirInterfaces: "from the capture's idlegate interfaces (0 inside, 1 outside)",
		DirInside:     "from --inside",
		DirInferred:   "inferred per flow (SYN sender, first UDP sender, echo requester)",
	}[r.Direction]
	fmt.Fprintf(w, "capture %s: %s in %s over %s; inside/outside %s\n",
		r.Capture, plural(r.Packets, "packet"), plural(len(r.Flows), "flow"), fmtDur(seconds(r.Duration)), dir)
	if r.Scale != 1 {
		fmt.Fprintf(w, "time scale %g: timeouts are scaled; real values in parentheses\n", r.Scale)
	}
	if n := r.NotIP + r.Malformed; n > 0 {
		fmt.Fprintf(w, "skipped %d frames that are not IP or do not decode\n", n)
	}
	list := r.listed(all)
	if len(r.Profiles) == 1 {
		r.single(w, list)
	} else {
		r.matrix(w, list)
	}
	if hidden := len(r.Flows) - len(list); hidden > 0 {
		fmt.Fprintf(w, "(%d more flows survived every profile; --all lists them)\n", hidden)
	}
	for _, p := range r.Profiles {
		if p.EventsLost > 0 {
			fmt.Fprintf(w, "warning: %s lost %d table events; some outcomes may be reported as plain drops\n", p.Name, p.EventsLost)
		}
	}
	fmt.Fprintln(w, r.Summary)
}

func (r *Report) listed(all bool) []int {
	var out []int
	for i := range r.Flows {
		broken := false
		for _, p := range r.Profiles {
			broken = broken || p.Flows[i].Broken()
		}
		if all || len(r.Flows) <= maxListed || broken {
			out = append(out, i)
		}
	}
	return out
}

func (r *Report) single(w io.Writer, list []int) {
	p := r.Profiles[0]
	fmt.Fprintf(w, "profile %s (tcp established %s): %s survived, %d broke\n", p.Name, p.Established, plural(p.Survived, "flow"), p.Broken)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tPKTS\tOUTCOME\tPACKET\tTIME\tIDLE\tTIMEOUT\tWHY")
	for _, i := range list {
		f, fr := r.Flows[i], p.Flows[i]
		if !fr.Broken() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\t\t\t\t%s\n", f, f.Packets, fr.Outcome, fr.Note)
			continue
		}
		pkt, timeout := "-", "-"
		if fr.Packet > 0 {
			pkt = strconv.Itoa(fr.Packet)
		}
		if fr.Timeout > 0 {
			timeout = r.scaledDur(fr.Timeout)
		}
		why := fr.Reason
		if fr.Dir != "" && fr.Outcome != ResetAtExpiry {
			why += " " + fr.Dir
		}
		if fr.Note != "" {
			why += "; " + fr.Note
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", f, f.Packets, fr.Outcome, pkt,
			fmtOffset(seconds(fr.Time)), fmtDur(seconds(fr.Idle)), timeout, why)
	}
	tw.Flush()
}

func (r *Report) matrix(w io.Writer, list []int) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	head := []string{"FLOW", "PKTS"}
	for _, p := range r.Profiles {
		head = append(head, p.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, i := range list {
		f := r.Flows[i]
		row := []string{f.String(), strconv.Itoa(f.Packets)}
		for _, p := range r.Profiles {
			row = append(row, cell(p.Flows[i]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w, "cells: ok, or the outcome @ the first hurt packet (reset-at-expiry: + time of the deadline)")
	for _, p := range r.Profiles {
		if fb := p.FirstBreak; fb != nil {
			f := r.Flows[fb.Flow-1]
			detail := fmt.Sprintf("%s: first break %s %s", p.Name, f, fb.Outcome)
			if fb.Packet > 0 {
				detail += fmt.Sprintf(" at packet %d", fb.Packet)
			}
			detail += fmt.Sprintf(" (%s, after %s idle", fmtOffset(seconds(fb.Time)), fmtDur(seconds(fb.Idle)))
			if fb.Timeout > 0 {
				detail += ", timeout " + r.scaledDur(fb.Timeout)
			}
			fmt.Fprintln(w, detail+")")
		}
	}
}

func cell(fr FlowResult) string {
	switch fr.Outcome {
	case Survived:
		return "ok"
	case ResetAtExpiry:
		return "reset-at-expiry " + fmtOffset(seconds(fr.Time))
	}
	return fmt.Sprintf("%s @%d", fr.Outcome, fr.Packet)
}
