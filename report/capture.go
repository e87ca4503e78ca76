package report

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/packet"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios"
)

// CaptureOptions describe the gateway that recorded a capture.
type CaptureOptions struct {
	// Policy is the policy the gateway ran (at its start, when Actions change it):
	// the table's timeouts, refresh rule and capacity come from it. The capture's
	// own comments give every verdict.
	Policy policy.Policy
	// PolicyName says where Policy came from ("Linux defaults", a profile, a file),
	// for the report's header.
	PolicyName string
	// Actions changed the gateway while it recorded (a scenario's flush and set
	// steps), in time order.
	Actions []scenarios.Action
	// Start is the instant the report's times count from, End when the recording
	// ended; zero: the first and the last record.
	Start, End time.Time
	// Title and Subtitle head the report; Title defaults to the capture's name.
	Title, Subtitle string
}

// ErrNotIdlegate is returned by FromCapture for a capture the gateway did not record.
var ErrNotIdlegate = errors.New("not a capture recorded by the idlegate gateway")

// FromCapture makes the report of an idlegate pcapng (`lab up --pcap`, `pcap start`,
// `scenario run --pcap`) read from r, named name in messages.
//
// The arrows are the capture's records with the gateway's own word on each (its
// comments: verdict, reason, direction, keepalive; translated copies for NAT;
// injected RSTs and ICMP errors). The timers, states and occupancy come from
// replaying the packets the gateway read through a policy.Engine with the gateway's
// policy in the capture's own time, applying the Actions when the capture's clock
// passes them: the engine is deterministic, so it rebuilds the gateway's table; any
// packet whose verdict differs from the comment is counted in View.Disagreed and
// said in the notes.
func FromCapture(name string, r io.Reader, opt CaptureOptions) (*Report, error) {
	rd, err := capture.NewReader(r)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s is cut short before its first packet: %w", name, ErrNotIdlegate)
		}
		return nil, fmt.Errorf("%s is %w: it is not even a pcapng (%v); for any other capture use `idlegate replay %s --profile NAME --html FILE`", name, ErrNotIdlegate, err, name)
	}
	pol := opt.Policy
	pol.VerdictEvents = false
	eng, err := policy.NewEngine(pol)
	if err != nil {
		return nil, fmt.Errorf("the gateway's policy: %w", err)
	}
	rep := &Report{Kind: FromCaptureFile, Title: opt.Title, Subtitle: opt.Subtitle, Start: opt.Start}
	if rep.Title == "" {
		rep.Title = "capture " + name
	}
	rep.Views = []View{{Name: "idlegate", Policy: opt.PolicyName}}
	sh := &shadow{eng: eng, actions: opt.Actions, buf: make([]byte, 65536)}
	sh.sub = eng.Subscribe(shadowBuffer)
	defer func() { sh.sub.Close() }()

	var rec capture.Record
	var b *viewBuilder
	var last time.Time
	var info, lastArrival packet.Info
	var seen packetSeen
	lastArrivalOK := false
	unlabelled := 0
	for n := 0; ; n++ {
		err := rd.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) && n > 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("the capture ends in the middle of a record after %d records; the report shows those", n))
				break
			}
			return nil, fmt.Errorf("%s: record %d: %w", name, n+1, err)
		}
		if n == 0 {
			if !rd.Idlegate() {
				return nil, fmt.Errorf("%s is %w (its interfaces are not idlegate's inside and outside); for any other capture use `idlegate replay %s --profile NAME --html FILE`", name, ErrNotIdlegate, name)
			}
			if rep.Start.IsZero() {
				rep.Start = rec.Time
			}
			b = newViewBuilder(&rep.Views[0], rep.Start, pol.Capacity)
			sh.b = b
		}
		at := rec.Time
		last = at
		sh.until(at)
		switch rec.Kind {
		case capture.Arrival:
			// info and seen are reused: the builder keeps nothing they point to.
			if packet.Decode(rec.Data, &info) != nil {
				info = packet.Info{}
			}
			res := sh.process(rec.Data, rec.Dir, at)
			if res.Verdict != rec.Verdict || res.Reason != rec.Reason {
				rep.Views[0].Disagreed++
			}
			seen = packetSeen{at: at, dir: rec.Dir, info: &info, verdict: rec.Verdict, reason: rec.Reason,
				keepalive: rec.Keepalive, conn: res.Conn, table: true, entries: eng.Len()}
			if info.Version == 0 {
				seen.info = nil
			}
			b.packet(&seen)
			lastArrival, lastArrivalOK = info, info.Version != 0
		case capture.Translated:
			var out packet.Info
			if lastArrivalOK && packet.Decode(rec.Data, &out) == nil {
				b.translated(natText(&lastArrival, &out))
			}
		case capture.Injected:
			b.inject(at, policy.Side(rec.Interface), rec.Data, Injected, rec.Verdict, rec.Reason)
		case capture.ExpiryReset:
			b.inject(at, policy.Side(rec.Interface), rec.Data, ExpiryReset, policy.Reset, 0)
		default:
			unlabelled++
		}
	}
	if b == nil {
		return nil, fmt.Errorf("%s holds no packets", name)
	}
	end := opt.End
	if end.IsZero() || end.Before(last) {
		end = last
	}
	sh.until(end)
	sh.tick(end)
	b.finish(end)
	rep.Duration = end.Sub(rep.Start)
	if d := sh.sub.Dropped() + sh.lost; d > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the report's replay lost %d table events; some timers may end early", d))
	}
	if unlabelled > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d records carry no comment of the gateway's and are not drawn", unlabelled))
	}
	if d := rep.Views[0].Disagreed; d > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("replaying the capture with the policy given gave %d of %d packets another verdict than the gateway wrote: the arrows are the gateway's, the timers the replay's; give the policy the gateway ran (--config, --profile, --set); a recording started while connections were open disagrees on their packets too", d, rep.Views[0].Sequence.Packets))
	}
	rep.noteLimits()
	return rep, nil
}

// shadowBuffer is the least buffer of the shadow engine's event subscription; it
// grows with the live entries, so that a sweep or flush of all of them fits.
const shadowBuffer = 4096

// shadow is the engine a gateway capture is replayed through.
type shadow struct {
	eng      *policy.Engine
	sub      *policy.Subscription
	b        *viewBuilder
	actions  []scenarios.Action
	res      policy.Result
	buf      []byte
	inj      []policy.Injected
	ticked   bool
	lastTick time.Time
	lost     uint64
}

// until applies the actions due by t and sweeps the table up to t.
func (s *shadow) until(t time.Time) {
	for len(s.actions) > 0 && !s.actions[0].At.After(t) {
		a := s.actions[0]
		s.actions = s.actions[1:]
		s.tick(a.At)
		s.room()
		switch {
		case a.Flush:
			n := s.eng.Flush(a.At)
			s.b.note(a.At, Gateway, fmt.Sprintf("FLUSH: the gateway reboots and forgets %d entries", n), true)
		case a.Policy != nil:
			p := *a.Policy
			p.VerdictEvents = false
			if err := s.eng.SetPolicy(p); err == nil {
				text := "POLICY"
				for _, kv := range a.Set {
					text += " " + kv
				}
				s.b.note(a.At, Gateway, text, false)
			}
		}
		s.drain()
	}
	if !s.ticked || t.Sub(s.lastTick) >= tickEvery {
		s.tick(t)
	}
}

// tickEvery is the least capture time between two sweeps, as replay's: expiry is
// exact at lookup whichever way, and a DESTROY carries the exact deadline.
const tickEvery = time.Millisecond

func (s *shadow) tick(t time.Time) {
	s.ticked, s.lastTick = true, t
	s.room()
	s.inj = s.eng.Tick(t, s.inj[:0]) // the gateway's own records give what it sent
	s.drain()
}

// room makes the subscription hold an event for every live entry.
func (s *shadow) room() {
	want := s.b.alive + 1024
	if want <= cap(s.sub.C) {
		return
	}
	next := s.eng.Subscribe(max(want, 2*cap(s.sub.C)))
	s.drain()
	s.lost += s.sub.Dropped()
	s.sub.Close()
	s.sub = next
}

func (s *shadow) process(pkt []byte, dir policy.Dir, t time.Time) *policy.Result {
	n := copy(s.buf, pkt)
	s.eng.Process(s.buf[:n], dir, t, &s.res)
	s.drain()
	return &s.res
}

func (s *shadow) drain() {
	for len(s.sub.C) > 0 {
		ev := <-s.sub.C
		s.b.event(&ev, -1)
	}
}

// natText describes the rewrite from packet in to packet out: the source for an
// outbound packet, the destination for an inbound one.
func natText(in, out *packet.Info) string {
	src, dst := netipAP(in.Src, in.SrcPort), netipAP(in.Dst, in.DstPort)
	osrc, odst := netipAP(out.Src, out.SrcPort), netipAP(out.Dst, out.DstPort)
	switch {
	case src != osrc && dst != odst:
		return src.String() + " → " + osrc.String() + ", " + dst.String() + " → " + odst.String()
	case src != osrc:
		return src.String() + " → " + osrc.String()
	case dst != odst:
		return dst.String() + " → " + odst.String()
	}
	return ""
}

func netipAP(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
