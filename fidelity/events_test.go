package fidelity

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/policy"
)

// event is one conntrack event as both sides report it: conntrack -E's text for the
// kernel, policy.Event for idlegate.
type event struct {
	at      time.Time
	typ     string // NEW, UPDATE, DESTROY
	proto   string // tcp, udp, icmp
	state   string // the TCP state where the event carries one, else ""
	sport   uint16 // of the original tuple; for ICMP both are the echo id
	dport   uint16
	replied bool // no [UNREPLIED]
	assured bool // [ASSURED]
}

// parseConntrackEvent reads one line of `conntrack -E -o timestamp`:
//
//	[1796303185.580746]	    [NEW] udp      17 30 src=198.18.0.2 dst=198.19.0.2 sport=51714 dport=5300 [UNREPLIED] src=... id=134283554
//
// The state is printed for NEW and DESTROY and for an UPDATE that changed it
// (IPCT_PROTOINFO); only the original tuple (up to the second src=) is kept.
func parseConntrackEvent(line string) (event, error) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "[") || !strings.HasPrefix(f[1], "[") {
		return event{}, fmt.Errorf("not a conntrack -E -o timestamp line: %q", line)
	}
	ts, err := strconv.ParseFloat(strings.Trim(f[0], "[]"), 64)
	if err != nil {
		return event{}, fmt.Errorf("timestamp of %q: %v", line, err)
	}
	sec := int64(ts)
	e := event{
		at:      time.Unix(sec, int64((ts-float64(sec))*1e9)),
		typ:     strings.Trim(f[1], "[]"),
		proto:   f[2],
		replied: true,
	}
	srcs := 0
	for _, tok := range f[3:] {
		switch {
		case tok == "[UNREPLIED]":
			e.replied = false
		case tok == "[ASSURED]":
			e.assured = true
		case strings.HasPrefix(tok, "src="):
			srcs++
		case srcs == 0:
			if _, err := conntrack.ParseTCPState(tok); err == nil && e.proto == "tcp" {
				e.state = tok
			}
		case srcs == 1:
			k, v, _ := strings.Cut(tok, "=")
			n, _ := strconv.ParseUint(v, 10, 16)
			switch k {
			case "sport":
				e.sport = uint16(n)
			case "dport":
				e.dport = uint16(n)
			case "id":
				e.sport, e.dport = uint16(n), uint16(n)
			}
		}
	}
	if srcs == 0 {
		return event{}, fmt.Errorf("no tuple in %q", line)
	}
	return e, nil
}

// fromEngine is an engine event in the same terms: the state where conntrack -E
// would print one.
func fromEngine(ev policy.Event) (event, bool) {
	if ev.Type == conntrack.EventVerdict {
		return event{}, false
	}
	e := event{
		at:      ev.Time,
		typ:     ev.Type.String(),
		proto:   conntrack.ProtoName(ev.Orig.Proto),
		sport:   ev.Orig.SrcPort,
		dport:   ev.Orig.DstPort,
		replied: ev.Replied,
		assured: ev.Assured,
	}
	if ev.Orig.Proto == conntrack.ProtoTCP && (ev.Type != conntrack.EventUpdate || ev.OldState != ev.State) {
		e.state = ev.State.String()
	}
	return e, true
}

// recorder keeps a side's events as they come.
type recorder struct {
	mu  sync.Mutex
	evs []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

// of returns the events of port (either end of the original tuple; the echo id for
// ICMP) and proto at or after from.
func (r *recorder) of(proto string, port uint16, from time.Time) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.evs {
		if e.proto == proto && (e.sport == port || e.dport == port) && !e.at.Before(from) {
			out = append(out, e)
		}
	}
	return out
}

// step renders e as "NEW SYN_SENT [UNREPLIED] @0.00s", its time since start.
func step(e event, start time.Time) string {
	s := e.typ
	if e.state != "" {
		s += " " + e.state
	}
	if !e.replied {
		s += " [UNREPLIED]"
	}
	if e.assured {
		s += " [ASSURED]"
	}
	return fmt.Sprintf("%s @%.2fs", s, e.at.Sub(start).Seconds())
}

// same reports whether two events are the same step, times aside.
func same(a, b event) bool {
	return a.typ == b.typ && a.state == b.state && a.replied == b.replied && a.assured == b.assured
}

func TestParseConntrackEvent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
	}{
		{"[1796303185.580746]\t    [NEW] udp      17 30 src=198.18.0.2 dst=198.19.0.2 sport=51714 dport=5300 [UNREPLIED] src=198.19.0.2 dst=198.18.0.2 sport=5300 dport=51714 id=134283554",
			event{typ: "NEW", proto: "udp", sport: 51714, dport: 5300}},
		{"[1796303186.089418]\t[DESTROY] tcp      6 120 CLOSE src=198.18.0.2 dst=198.19.0.2 sport=44052 dport=9 [UNREPLIED] src=198.19.0.2 dst=198.18.0.2 sport=9 dport=44052 id=1800186000",
			event{typ: "DESTROY", proto: "tcp", state: "CLOSE", sport: 44052, dport: 9}},
		{"[1796303186.097406]\t [UPDATE] icmp     1 30 src=198.18.0.2 dst=198.19.0.2 type=8 code=0 id=30133 src=198.19.0.2 dst=198.18.0.2 type=0 code=0 id=30133 id=175105815",
			event{typ: "UPDATE", proto: "icmp", sport: 30133, dport: 30133, replied: true}},
		{"[1796303187.000001]\t [UPDATE] tcp      6 432000 ESTABLISHED src=198.18.0.2 dst=198.19.0.2 sport=40000 dport=80 src=198.19.0.2 dst=198.18.0.2 sport=80 dport=40000 [ASSURED] id=7",
			event{typ: "UPDATE", proto: "tcp", state: "ESTABLISHED", sport: 40000, dport: 80, replied: true, assured: true}},
		{"[1796303187.5]\t [UPDATE] tcp      6 300 src=198.18.0.2 dst=198.19.0.2 sport=40000 dport=80 src=198.19.0.2 dst=198.18.0.2 sport=80 dport=40000 [ASSURED] id=7",
			event{typ: "UPDATE", proto: "tcp", sport: 40000, dport: 80, replied: true, assured: true}},
	} {
		got, err := parseConntrackEvent(tc.line)
		if err != nil {
			t.Fatal(err)
		}
		tc.want.at = got.at
		if got != tc.want || got.at.Year() < 2000 {
			t.Errorf("parse %q:\n got  %+v\n want %+v", tc.line, got, tc.want)
		}
	}
	for _, bad := range []string{"", "conntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.", "[x] [NEW] tcp 6 src=1"} {
		if _, err := parseConntrackEvent(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
