package scenarios

import (
	"context"
	"strings"
	"testing"
)

// inversion is a playbook story with its cure taken out: the text edits that remove it,
// the expectations that must then fail (with what the run must have seen instead), and
// one that must still hold (the broken half of the story is untouched).
type inversion struct {
	story string
	edits [][2]string // old, new in the story's file
	fail  []struct{ expect, got string }
	hold  string
}

var inversions = []inversion{
	{
		story: "grpc-too-many-pings",
		edits: [][2]string{{`args: [--listen, "${server4}:50052", --min-time, 5s]`, `args: [--listen, "${server4}:50052"]`}},
		fail:  []struct{ expect, got string }{{"aligned outcome survived", "reset (UNAVAILABLE)"}},
		hold:  "pinger outcome reset",
	},
	{
		story: "slow-answer",
		edits: [][2]string{{`--keepalive-idle, 1s, --keepalive-intvl, 1s, --keepalive-cnt, "3", `, ""}},
		fail: []struct{ expect, got string }{
			{"ka outcome survived", "hung"},
			{"gateway expired (port 7000) = 1", "2"},
			{"gateway keepalive_probes >= 3", "0"},
		},
		hold: "bare outcome hung",
	},
	{
		story: "half-close-forgotten",
		edits: [][2]string{{`--keepalive-idle, 1s, --keepalive-intvl, 1s, --keepalive-cnt, "3", `, ""}},
		fail: []struct{ expect, got string }{
			{"ka outcome survived", "hung"},
			{"gateway expired (port 7000) = 1", "2"},
		},
		hold: "bare outcome hung",
	},
	{
		// The right relation taken out: matched gets the hasty user timeout.
		story: "user-timeout-vs-keepalive",
		edits: [][2]string{{`--user-timeout, 8s`, `--user-timeout, 2s`}},
		fail:  []struct{ expect, got string }{{"matched outcome timed-out at >= 16s <= 21s", "timed-out (ETIMEDOUT) at 3."}},
		hold:  "hasty outcome timed-out",
	},
	{
		story: "netns-sysctl",
		edits: [][2]string{
			{`echo ${sec:1s} > tcp_keepalive_time && echo ${sec:1s} > tcp_keepalive_intvl && echo 3 > tcp_keepalive_probes && `, ""},
			{`--keepalive-idle, 1s, --keepalive-intvl, 1s, --keepalive-cnt, "3", `, "--keepalive, "},
		},
		fail: []struct{ expect, got string }{
			{"app-tuned outcome survived", "reset"},
			{"app-socket outcome survived", "reset"},
			{"app-tuned never prints \"TCP_KEEPIDLE=7200s\"", "its output has"},
		},
		hold: "app outcome reset",
	},
	{
		story: "keepalive-stops-at-proxy",
		edits: [][2]string{{` proxy_socket_keepalive on;`, ""}},
		fail: []struct{ expect, got string }{
			{"cured outcome survived", "c1 "},
			{"gateway keepalive_probes (port 7001) >= 2", "0"},
			{"gateway expired (port 7001) = 0", "1"},
		},
		hold: "through outcome closed or reset",
	},
	{
		story: "server-dead-sessions",
		edits: [][2]string{{`, --keepalive-idle, 2s, --keepalive-intvl, 1s, --keepalive-cnt, "3"]`, `]`}},
		fail: []struct{ expect, got string }{
			{`ss prints "port 7001: 0 established"`, "port 7001: 5 established"},
			{`ka-server events "error" err ETIMEDOUT = 5`, "0"},
		},
		hold: `ss prints "port 7000: 5 established"`,
	},
}

// TestInvertedNewStoriesFail plays each story of the second wave with its cure removed:
// the run must fail on the very expectations that tell the cure, while the broken half
// still holds. tcp-keepalive-saves has its own test (TestInvertedStoryFails).
func TestInvertedNewStoriesFail(t *testing.T) {
	needRoot(t)
	buildBinary(t)
	for _, inv := range inversions {
		t.Run(inv.story, func(t *testing.T) {
			t.Parallel()
			src, err := Source(inv.story)
			if err != nil {
				t.Fatal(err)
			}
			text := string(src)
			for _, e := range inv.edits {
				if !strings.Contains(text, e[0]) {
					t.Fatalf("%q is not in %s: the cure is not where this test expects it", e[0], inv.story)
				}
				text = strings.ReplaceAll(text, e[0], e[1])
			}
			s, err := Parse("inverted-"+inv.story+".yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			rep := run(t, context.Background(), s)
			if rep.Pass || !strings.HasPrefix(rep.VerdictLine(), "FAIL") {
				t.Fatalf("the story without its cure passed: %s", rep.VerdictLine())
			}
			for _, want := range inv.fail {
				c := check(rep, want.expect)
				if c == nil {
					t.Fatalf("no expectation %q in %+v", want.expect, rep.Checks)
				}
				if c.Pass || !strings.Contains(c.Got, want.got) {
					t.Errorf("%s: pass %v got %q, want a failure with %q", c.Expect, c.Pass, c.Got, want.got)
				}
			}
			if c := check(rep, inv.hold); c == nil || !c.Pass {
				t.Errorf("the untouched half of the story should still hold: %q: %+v", inv.hold, c)
			}
		})
	}
}

// noHiddenKeepalive idles a connection of every built-in server 22 s behind a box that
// forgets after 20 s, above Go's default 15 s keepalive: no agent asked for keepalive, so
// no probe may cross the box and every connection must be forgotten.
const noHiddenKeepalive = `name: no-hidden-keepalive
title: t
concept: c
policy:
  timeouts:
    tcp: {established: 20s}
  orphan: reset
processes:
  - {name: echo, side: server, agent: tcp-echo-server, args: [--listen, "${server4}:7000"]}
  - {name: web, side: server, agent: http-server, args: [--listen, "${server4}:8080", --keepalive-timeout, 0s]}
  - {name: rpc, side: server, agent: grpc-server, args: [--listen, "${server4}:50051"]}
  - name: tcp
    side: client
    agent: tcp-client
    args: [--connect, "${server4}:7000", --pattern, "send:hello,idle:22s,send:again", --hang-after, 5s]
  - name: http
    side: client
    agent: http-client
    args: [--url, "http://${server4}:8080/", --method, POST, --requests, "2", --interval, 22s, --idle-conn-timeout, 0s, --hang-after, 5s]
  - name: grpc
    side: client
    agent: grpc-client
    args: [--connect, "${server4}:50051", --pattern, "call:hello,idle:22s,call:again", --deadline, 5s]
steps:
  - start: [echo, web, rpc]
  - wait: 300ms
  - start: [tcp, http, grpc]
  - wait_exit: [tcp, http, grpc]
    timeout: 40s
expect:
  - {of: tcp, outcome: reset}
  - {of: http, outcome: reset}
  - {of: grpc, outcome: [reset, timed-out]}
  - {gateway: keepalive_probes, count: 0}
  - {gateway: expired, port: [7000], count: 1}
  - {gateway: expired, port: [8080], count: 1}
  - {gateway: expired, port: [50051], count: 1}
`

// TestNoHiddenKeepaliveAt20s proves issue 13's trap gone: with a 20 s box timeout every
// built-in server and client leaves an idle connection to die (Go would have kept each one
// alive with its default 15 s keepalive).
func TestNoHiddenKeepaliveAt20s(t *testing.T) {
	needRoot(t)
	t.Parallel()
	s, err := Parse("no-hidden-keepalive.yaml", []byte(noHiddenKeepalive))
	if err != nil {
		t.Fatal(err)
	}
	if rep := run(t, context.Background(), s); !rep.Pass {
		t.Error(rep.VerdictLine())
	}
}
