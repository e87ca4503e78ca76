package scenarios

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
)

const variantStory = `name: slow
title: t
concept: c
policy:
  timeouts:
    tcp: {established: 3s}
files:
  app.conf: "keepalive_timeout ${dur:2s}; read ${dur:1500ms}; every ${sec:1s}"
processes:
  - name: server
    side: server
    agent: tcp-echo-server
    args: [--listen, "${server4}:7000"]
  - name: cli
    side: client
    agent: tcp-client
    args: [--connect, "${server4}:7000", --pattern, "send:hi,idle:5s,send:again", --keepalive-idle, 1s, --keepalive-cnt, "3"]
  - name: sh
    side: client
    command: {sh: "sleep ${sec:2s}"}
steps:
  - start: [server, sh]
  - wait: 300ms
  - start: cli
  - at: 4s
    set: {timeouts.tcp.established: 10s, orphan: reset}
  - wait_exit: [cli]
expect:
  - of: cli
    outcome: survived
    at: {min: 5s, max: 8s}
variants:
  - name: scale
    time_scale: 6
    why: slower
`

// TestVariantScalesEverything derives a scale variant and checks every span of time in
// it, and that the story as written is left alone (${dur:D} at scale 1).
func TestVariantScalesEverything(t *testing.T) {
	s, err := Parse("slow.yaml", []byte(variantStory))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Files["app.conf"]; got != "keepalive_timeout 2s; read 1500ms; every 1" {
		t.Errorf("story as written: app.conf %q", got)
	}
	v, err := s.Variant("scale")
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "slow:scale" || v.VariantInfo() == nil || v.VariantInfo().TimeScale != 6 || len(v.Variants) != 0 {
		t.Errorf("variant %q %+v, variants %v", v.Name, v.VariantInfo(), v.VariantNames())
	}
	if got := time.Duration(v.Policy().Timeouts.TCP.Established); got != 18*time.Second {
		t.Errorf("established %v, want 18s", got)
	}
	if v.Scale != 6 {
		t.Errorf("scale %v, want 6", v.Scale)
	}
	if got := v.Files["app.conf"]; got != "keepalive_timeout 12s; read 9s; every 6" {
		t.Errorf("app.conf %q", got)
	}
	if got := v.Processes[2].Command.Sh; got != "sleep 12" {
		t.Errorf("command %q", got)
	}
	want := []string{"--connect", "${server4}:7000", "--pattern", "send:hi,idle:30s,send:again", "--keepalive-idle", "6s", "--keepalive-cnt", "3"}
	if got := v.Processes[1].Args; !reflect.DeepEqual(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
	st := v.Steps
	if time.Duration(*st[1].Wait) != 1800*time.Millisecond || time.Duration(*st[3].At) != 24*time.Second ||
		time.Duration(*st[4].Timeout) != 180*time.Second {
		t.Errorf("steps: wait %v, at %v, wait_exit timeout %v", *st[1].Wait, *st[3].At, *st[4].Timeout)
	}
	if got := st[3].Set; got[0].Value != "1m0s" || got[1].Value != "reset" {
		t.Errorf("set %+v, want the timeout x6 and orphan as it is", got)
	}
	if at := v.Expect[0].At; time.Duration(*at.Min) != 30*time.Second || time.Duration(*at.Max) != 48*time.Second {
		t.Errorf("expect at %v..%v", *at.Min, *at.Max)
	}
	if time.Duration(v.Timeout) != 6*DefaultTimeout {
		t.Errorf("timeout %v", v.Timeout)
	}
	// The story itself is unchanged by the derivation.
	if s.Processes[1].Args[3] != "send:hi,idle:5s,send:again" || time.Duration(*s.Steps[1].Wait) != 300*time.Millisecond ||
		time.Duration(s.Policy().Timeouts.TCP.Established) != 3*time.Second {
		t.Errorf("the story changed: %q, wait %v", s.Processes[1].Args, *s.Steps[1].Wait)
	}
}

func TestVariantErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"no factor", "variants:\n  - name: scale\n", "line 33: variants[0]: missing key time_scale"},
		{"bad name", "variants:\n  - name: Scale\n    time_scale: 2\n", `variants[0].name: "Scale": use a-z`},
		{"twice", "variants:\n  - {name: a, time_scale: 2}\n  - {name: a, time_scale: 3}\n", `"a" is already the name of another variant`},
		{"factor too big", "variants:\n  - {name: a, time_scale: 2000}\n", "above 1000"},
		{"bad time var", "", "${dur:soon}: \"soon\" is not a duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(variantStory, "variants:\n  - name: scale\n    time_scale: 6\n    why: slower\n", tt.yaml, 1)
			if tt.name == "bad time var" {
				text = strings.Replace(text, "${dur:2s}", "${dur:soon}", 1)
			}
			_, err := Parse("slow.yaml", []byte(text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	s, err := Parse("slow.yaml", []byte(variantStory))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Variant("fast"); err == nil || !strings.Contains(err.Error(), "known variants: scale") {
		t.Errorf("unknown variant: %v", err)
	}
	if _, err := Lookup("tcp-keepalive-saves:nope"); err == nil || !strings.Contains(err.Error(), `no variant "nope"`) {
		t.Errorf("Lookup of an unknown variant: %v", err)
	}
	if v, err := Lookup("tcp-keepalive-saves:scale"); err != nil || v.Name != "tcp-keepalive-saves:scale" {
		t.Errorf("Lookup: %v, %v", v, err)
	}
}

// idleTimeouts are the timeouts of states in which a connection of the story's protocols
// waits for its application: the ones a keepalive (Go's default one included) refreshes.
func idleTimeouts(s *Scenario) map[string]time.Duration {
	t := s.Policy().Timeouts
	m := map[string]time.Duration{"tcp.established": time.Duration(t.TCP.Established)}
	for _, p := range s.Processes {
		if strings.Contains(strings.Join(p.Args, " "), "shut:") { // half-closed connections
			m["tcp.fin_wait"], m["tcp.close_wait"] = time.Duration(t.TCP.FinWait), time.Duration(t.TCP.CloseWait)
		}
		if strings.HasPrefix(p.Agent, "udp-") || (p.Command != nil && strings.Contains(p.Command.String(), "UDP")) {
			m["udp"], m["udp_stream"] = time.Duration(t.UDP), time.Duration(t.UDPStream)
		}
	}
	return m
}

// longestQuiet is the longest idle or hold period of a story: its idle steps and its
// agents' idle:D and hold:D pattern steps, --interval between requests and a server's
// --delay before it answers.
func longestQuiet(s *Scenario) time.Duration {
	var m time.Duration
	for _, st := range s.Steps {
		if st.Idle != nil {
			m = max(m, time.Duration(*st.Idle))
		}
	}
	for _, p := range s.Processes {
		for i, a := range p.Args {
			if i > 0 && (p.Args[i-1] == "--interval" || p.Args[i-1] == "--delay") {
				if d, err := time.ParseDuration(a); err == nil {
					m = max(m, d)
				}
			}
			if i == 0 || p.Args[i-1] != "--pattern" {
				continue
			}
			for _, item := range strings.Split(a, ",") {
				op, arg, _ := strings.Cut(item, ":")
				if op == "idle" || op == "hold" || op == "slow" {
					if d, err := time.ParseDuration(arg); err == nil {
						m = max(m, d)
					}
				}
			}
		}
	}
	return m
}

// TestEveryStoryRunsAboveGoKeepalive: no story passes only because its timeouts are short.
// Each idle timeout a story sets below Go's default keepalive (15 s), and its longest quiet
// period, are above 15 s in the story itself or in one of its variants; a story with
// neither (nothing idles, or only for less than a second between requests) needs no variant.
func TestEveryStoryRunsAboveGoKeepalive(t *testing.T) {
	list, err := Playbook()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		def := idleTimeouts(&Scenario{pol: policy.Default(), Processes: s.Processes})
		base := idleTimeouts(s)
		var short []string
		for k, d := range base {
			if d != def[k] && d <= GoKeepaliveDefault {
				short = append(short, k)
			}
		}
		quiet := longestQuiet(s)
		if quiet < time.Second {
			quiet = 0 // busy, not idle
		}
		if len(short) == 0 && (quiet == 0 || quiet > GoKeepaliveDefault) {
			continue
		}
		runs := []*Scenario{s}
		for _, name := range s.VariantNames() {
			v, err := s.Variant(name)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, v)
		}
		ok := false
		for _, r := range runs {
			good := quiet == 0 || longestQuiet(r) > GoKeepaliveDefault
			to := idleTimeouts(r)
			for _, k := range short {
				good = good && to[k] > GoKeepaliveDefault
			}
			ok = ok || good
		}
		if !ok {
			t.Errorf("%s: timeouts %v and its longest quiet period %v stay at or below Go's default keepalive (%v) in every run; add a variant with a time_scale that lifts them above it",
				s.Name, short, quiet, GoKeepaliveDefault)
		}
	}
}
