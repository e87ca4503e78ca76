package scenarios

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios/agent"
)

func TestPlaybookParses(t *testing.T) {
	list, err := Playbook()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) < 20 {
		t.Fatalf("the playbook has %d scenarios, want the 18 stories of the issue plus ssh and nginx", len(list))
	}
	for i, name := range playbookOrder {
		if i >= len(list) || list[i].Name != name {
			t.Fatalf("scenario %d is not %q: every scenario file of playbookOrder must exist, in order", i, name)
		}
	}
	for _, s := range list {
		if strings.TrimSpace(s.Story) == "" || strings.TrimSpace(s.Fix) == "" {
			t.Errorf("%s: a playbook scenario says its story and its fix", s.Name)
		}
	}
}

func TestProfileAndScale(t *testing.T) {
	s, err := Lookup("refresh-needs-data")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Policy()
	if got := time.Duration(p.Timeouts.TCP.Established); got != 3*time.Second {
		t.Errorf("aws-alb scaled by 0.05: established = %v, want 3s", got)
	}
	if p.Refresh != policy.Refresh(conntrack.RefreshData) || !p.ResetOnExpire {
		t.Errorf("aws-alb: refresh %v reset_on_expire %v, want data and true", p.Refresh, p.ResetOnExpire)
	}
}

func TestPolicyFrom(t *testing.T) {
	text := strings.Replace(minimal, "policy:\n", "policy:\n  from: aws-nlb\n", 1)
	s, err := Parse("from.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Policy()
	if p.Orphan != policy.OrphanReset || time.Duration(p.Timeouts.TCP.Established) != 3*time.Second {
		t.Errorf("from: aws-nlb with established 3s: orphan %v established %v", p.Orphan, p.Timeouts.TCP.Established)
	}
	_, err = Parse("from.yaml", []byte(strings.Replace(text, "aws-nlb", "aws-nbl", 1)))
	if err == nil || !strings.Contains(err.Error(), "line 5") || !strings.Contains(err.Error(), "aws-nbl") {
		t.Errorf("an unknown profile in from: is an error at its line, got %v", err)
	}
}

// minimal is a valid scenario; each error case changes one thing in it.
const minimal = `name: tiny
title: t
concept: c
policy:
  timeouts:
    tcp: {established: 3s}
processes:
  - name: server
    side: server
    agent: tcp-echo-server
    args: [--listen, "${server4}:7000"]
  - name: client
    side: client
    agent: tcp-client
    args: [--connect, "${server4}:7000"]
steps:
  - start: server
  - wait: 300ms
  - start: client
  - wait_exit: client
    timeout: 5s
expect:
  - of: client
    outcome: survived
  - gateway: new
    count: 1
`

func TestParseMinimal(t *testing.T) {
	s, err := Parse("tiny.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(s.Policy().Timeouts.TCP.Established); got != 3*time.Second {
		t.Errorf("established = %v, want 3s", got)
	}
	if len(s.Steps) != 4 || *s.Steps[3].Timeout != Duration(5*time.Second) || s.Steps[3].WaitExit[0] != "client" {
		t.Errorf("steps not read as written: %+v", s.Steps)
	}
	if c := s.Expect[1].count(); !c.ok(1) || c.ok(2) {
		t.Errorf("count: 1 accepts 1 only, got %v", c)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		old, new  string // replace old by new in minimal
		wantParts []string
	}{
		{"not yaml", "title: t", "title: [t", []string{"not valid YAML"}},
		{"unknown top key", "concept: c", "concept: c\nconcpet: d", []string{"line 4", `unknown key "concpet"`, "known keys:"}},
		{"missing name", "name: tiny\n", "", []string{"missing key name"}},
		{"bad name", "name: tiny", "name: Tiny_1", []string{"line 1", "name", `"Tiny_1"`}},
		{"missing concept", "concept: c\n", "", []string{"missing key concept"}},
		{"policy unknown key", "tcp: {established: 3s}", "tcp: {establised: 3s}", []string{"line 6", `unknown key "establised"`}},
		{"policy bad value", "tcp: {established: 3s}", "tcp: {established: 3}", []string{"line 6", "established", "no unit"}},
		{"policy not a mapping", "policy:\n  timeouts:\n    tcp: {established: 3s}", "policy: strict", []string{"line 4", "policy: expected a mapping"}},
		{"unknown profile", "policy:", "profile: aws-nat-gatway\npolicy:", []string{"line 4", "profile", "aws-nat-gatway", "known profiles"}},
		{"bad scale", "policy:", "scale: -1\npolicy:", []string{"line 4", "scale", "above 0"}},
		{"side", "side: server\n    agent: tcp-echo-server", "side: middle\n    agent: tcp-echo-server", []string{"line 9", "processes[0].side", `"middle"`}},
		{"unknown agent", "agent: tcp-echo-server", "agent: tcp-echo", []string{"line 10", "processes[0].agent", "unknown agent", "tcp-echo-server"}},
		{"agent and command", "agent: tcp-echo-server", "agent: tcp-echo-server\n    command: [true]", []string{"line 8", "not both"}},
		{"neither", "    agent: tcp-echo-server\n", "", []string{"line 8", "missing key agent"}},
		{"duplicate process", "name: client", "name: server", []string{"line 12", `"server" is already`}},
		{"unknown variable", "${server4}:7000\"]\n  - name: client", "${srv4}:7000\"]\n  - name: client", []string{"line 11", "processes[0].args[1]", "${srv4}", "${server4}"}},
		{"unknown step key", "  - wait: 300ms", "  - sleep: 300ms", []string{"line 18", `unknown key "sleep"`, "wait_exit"}},
		{"two actions", "  - wait: 300ms", "  - wait: 300ms\n    flush: true", []string{"line 18", "one action per step", "wait and flush"}},
		{"bad duration", "wait: 300ms", "wait: soon", []string{"line 18", "steps[1].wait", "bad duration"}},
		{"start unknown", "  - start: client", "  - start: clients", []string{"line 19", "steps[2].start", `no process named "clients"`}},
		{"wait for a process not started", "  - start: client\n", "", []string{"line 19", "steps[2].wait_exit", "not started by an earlier step"}},
		{"never started", "  - start: client\n  - wait_exit: client\n    timeout: 5s\n", "", []string{"line 12", `"client" is never started`}},
		{"used before start", "  - start: server\n", "  - kill: server\n  - start: server\n", []string{"line 17", "steps[0].kill", "not started by an earlier step"}},
		{"send without stdin", "  - wait: 300ms", "  - send: {to: server, text: hi}", []string{"line 18", "steps[1].send.to", "stdin: true"}},
		{"timeout alone", "  - wait: 300ms", "  - wait: 300ms\n    timeout: 1s", []string{"line 19", "timeout goes with wait_exit"}},
		{"bad signal", "  - wait: 300ms", "  - kill: server\n    signal: QUIT", []string{"line 19", "signal", "QUIT"}},
		{"blackhole side", "  - wait: 300ms", "  - blackhole: router", []string{"line 18", "blackhole", `"router"`}},
		{"bad live policy", "  - wait: 300ms", "  - set: {orphan: maybe}", []string{"line 18", "steps[1].set", "orphan", "maybe"}},
		{"live capacity", "  - wait: 300ms", "  - set: {capacity: 5}", []string{"line 18", "capacity and nat are fixed"}},
		{"unknown outcome", "outcome: survived", "outcome: lived", []string{"line 24", "expect[0].outcome[0]", `"lived"`, "timed-out"}},
		{"unknown counter", "gateway: new", "gateway: news", []string{"line 25", "expect[1].gateway", `"news"`, "keepalive_probes"}},
		{"counter without count", "  - gateway: new\n    count: 1\n", "  - gateway: new\n", []string{"line 25", "count, min or max"}},
		{"count and min", "    count: 1\n", "    count: 1\n    min: 1\n", []string{"line 26", "count alone"}},
		{"min above max", "    count: 1\n", "    min: 3\n    max: 1\n", []string{"line 26", "min 3 is above max 1"}},
		{"of unknown", "  - of: client", "  - of: cleint", []string{"line 23", "expect[0].of", `"cleint"`}},
		{"two kinds", "    outcome: survived", "    outcome: survived\n    exit: 0", []string{"line 23", "one expectation per entry"}},
		{"no kind", "    outcome: survived\n", "", []string{"line 23", "needs one of"}},
		{"outcome of a command", "agent: tcp-client\n    args: [--connect, \"${server4}:7000\"]", "command: [true]", []string{"line 22", "not a built-in agent"}},
		{"port on outcome", "    outcome: survived", "    outcome: survived\n    port: 7000", []string{"line 25", "port filters gateway counters"}},
		{"bad port", "    count: 1\n", "    count: 1\n    port: 70000\n", []string{"line 27", "70000 is not a port"}},
		{"count not a number", "    count: 1", "    count: one", []string{"line 26", "count", `"one" is not a whole number`}},
		{"no expectations", "expect:\n  - of: client\n    outcome: survived\n  - gateway: new\n    count: 1\n", "", []string{"missing key expect"}},
		{"no steps", "steps:\n  - start: server\n  - wait: 300ms\n  - start: client\n  - wait_exit: client\n    timeout: 5s\n", "", []string{"missing key steps"}},
		{"list of mappings expected", "processes:\n", "processes: server\nx:\n", []string{"line 7", "processes: expected a mapping"}},
		{"duplicate key", "title: t", "title: t\ntitle: u", []string{"line 3", `"title" given twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(minimal, tt.old) {
				t.Fatalf("test case does not apply: %q is not in the minimal scenario", tt.old)
			}
			text := strings.Replace(minimal, tt.old, tt.new, 1)
			_, err := Parse("tiny.yaml", []byte(text))
			if err == nil {
				t.Fatalf("parsed without error:\n%s", text)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "tiny.yaml: ") {
				t.Errorf("error %q does not name the file", msg)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q lacks %q", msg, part)
				}
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if _, err := Lookup("idle-reset"); err != nil {
		t.Fatal(err)
	}
	_, err := Lookup("idle-rest")
	if err == nil || !strings.Contains(err.Error(), "idle-reset") {
		t.Fatalf("an unknown name lists the known ones, got %v", err)
	}
	if _, err := Lookup("/nonexistent/story.yaml"); err == nil {
		t.Fatal("a missing file is an error")
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"dir": "/tmp/x", "server4": "198.19.0.2"}
	got := expand(`cp ${dir}/a "$(cat ${dir}/b)" $HOME ${server4}:7000 ${unknown}`, vars)
	want := `cp /tmp/x/a "$(cat /tmp/x/b)" $HOME 198.19.0.2:7000 ${unknown}`
	if got != want {
		t.Errorf("expand = %q, want %q", got, want)
	}
}

func TestWrapAndFold(t *testing.T) {
	if got := wrap("a bb ccc dddd", 6); strings.Join(got, "|") != "a bb|ccc|dddd" {
		t.Errorf("wrap = %q", got)
	}
	if got := wrap("abcdefghij", 4); strings.Join(got, "|") != "abcd|efgh|ij" {
		t.Errorf("wrap of a long word = %q", got)
	}
	start := time.Unix(1000, 0)
	tl := &timeline{start: start}
	for i := range 10 {
		tl.add(start.Add(time.Duration(i)*100*time.Millisecond), colGateway, "NEW tcp "+string(rune('0'+i))+"->7001")
	}
	tl.add(start.Add(5*time.Second), colGateway, "NEW tcp 9->7001")
	rows := tl.Rows(start.Add(time.Minute))
	if len(rows) != foldKeep+2 {
		t.Fatalf("a burst of 10 similar rows folds into %d shown + 1 summary, then a later one: got %d rows: %+v", foldKeep, len(rows), rows)
	}
	if !strings.Contains(rows[foldKeep].Text, "7 more like that") {
		t.Errorf("summary row = %q", rows[foldKeep].Text)
	}
}

// fakeRunner is a runner with recorded events and no lab, for checking expectations.
func fakeRunner(t *testing.T, text string) (*runner, *Scenario) {
	t.Helper()
	s, err := Parse("fake.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1000, 0)
	r := &runner{sc: s, procs: map[string]*proc{}, tl: &timeline{start: start}}
	r.gw = &gwRecorder{tl: r.tl, pol: func() policy.Policy { return s.Policy() }}
	for _, p := range s.Processes {
		r.procs[p.Name] = &proc{spec: p, done: make(chan struct{}), tl: r.tl}
	}
	return r, s
}

// TestEveryExpectationCanFail checks each kind of expectation against what was seen, in
// a passing and a failing version.
func TestEveryExpectationCanFail(t *testing.T) {
	text := strings.Replace(minimal, "  - name: client\n", "  - name: tool\n    side: client\n    command: [true]\n  - name: client\n", 1)
	text = strings.Replace(text, "  - start: client\n", "  - start: [client, tool]\n", 1)
	r, _ := fakeRunner(t, text)
	start := r.tl.start
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	end := at(20)
	client, tool := r.procs["client"], r.procs["tool"]
	client.cmd, tool.cmd = fakeCmd(), fakeCmd()
	close(client.done)
	close(tool.done)
	client.events = []agent.Event{
		{T: at(0.3), Conn: "c1", Event: "connect"},
		{T: at(5.3), Conn: "c1", Event: "error", Op: "read", Err: "ECONNRESET"},
		{T: at(5.3), Conn: "c1", Event: "result", Outcome: "reset", Err: "ECONNRESET"},
		{T: at(5.4), Conn: "c2", Event: "result", Outcome: "survived"},
	}
	tool.exitCode = 255
	tool.output.WriteString("hello-one\nConnection reset by peer\n")
	k := conntrack.MakeKey(conntrack.ProtoTCP, netipAddrPort(lab.ClientAddr4.String(), 40000), netipAddrPort(lab.ServerAddr4.String(), 7000))
	r.gw.record(policy.Event{Event: conntrack.Event{Type: conntrack.EventNew, Time: at(0.3), Orig: k, Reply: k.Reply(), Proto: conntrack.ProtoTCP}})
	r.gw.record(policy.Event{Event: conntrack.Event{Type: conntrack.EventDestroy, Time: at(3.3), Orig: k, Reply: k.Reply(), Proto: conntrack.ProtoTCP, Reason: conntrack.ReasonExpired, Idle: 3 * time.Second, Timeout: 3 * time.Second}})
	r.gw.record(policy.Event{Event: conntrack.Event{Type: conntrack.EventNew, Time: at(30), Orig: k, Reply: k.Reply(), Proto: conntrack.ProtoTCP}}) // after the end: not counted

	one, two, zero := 1, 2, 0
	yes, no := true, false
	d := func(s float64) *Duration { v := Duration(time.Duration(s * float64(time.Second))); return &v }
	tests := []struct {
		name string
		e    Expect
		pass bool
	}{
		{"outcome of one conn", Expect{Of: "client/c1", Outcome: []string{"reset"}}, true},
		{"outcome of one conn, wrong", Expect{Of: "client/c1", Outcome: []string{"survived"}}, false},
		{"outcome of every conn", Expect{Of: "client", Outcome: []string{"reset"}}, false},
		{"outcome of every conn, any of", Expect{Of: "client", Outcome: []string{"reset", "survived"}}, true},
		{"outcome counted", Expect{Of: "client", Outcome: []string{"reset"}, Count: &one}, true},
		{"outcome counted, wrong", Expect{Of: "client", Outcome: []string{"reset"}, Count: &two}, false},
		{"outcome in time", Expect{Of: "client/c1", Outcome: []string{"reset"}, At: &Interval{Min: d(5), Max: d(6)}}, true},
		{"outcome too late", Expect{Of: "client/c1", Outcome: []string{"reset"}, At: &Interval{Max: d(5)}}, false},
		{"outcome too early", Expect{Of: "client/c1", Outcome: []string{"reset"}, At: &Interval{Min: d(6)}}, false},
		{"outcome of a conn without result", Expect{Of: "client/c9", Outcome: []string{"reset"}}, false},
		{"event", Expect{Of: "client", Event: "error", Err: "ECONNRESET", Count: &one}, true},
		{"event, other errno", Expect{Of: "client", Event: "error", Err: "ETIMEDOUT"}, false},
		{"event, none at all", Expect{Of: "client", Event: "heartbeat"}, false},
		{"event, max", Expect{Of: "client", Event: "connect", Max: &zero}, false},
		{"gateway exact", Expect{Gateway: "new", Port: []int{7000}, Count: &one}, true},
		{"gateway exact, wrong", Expect{Gateway: "new", Port: []int{7000}, Count: &two}, false},
		{"gateway min", Expect{Gateway: "expired", Port: []int{7000}, Min: &one}, true},
		{"gateway min, other port", Expect{Gateway: "expired", Port: []int{7001}, Min: &one}, false},
		{"gateway max", Expect{Gateway: "time_wait", Max: &zero}, true},
		{"gateway from stats", Expect{Gateway: "keepalive_probes", Min: &one}, false},
		{"exit", Expect{Of: "tool", Exit: intp(255)}, true},
		{"exit, wrong", Expect{Of: "tool", Exit: intp(0)}, false},
		{"output", Expect{Of: "tool", Output: "hello-one"}, true},
		{"output, missing", Expect{Of: "tool", Output: "hello-two"}, false},
		{"output lacks", Expect{Of: "tool", OutputLacks: "hello-two"}, true},
		{"output lacks, present", Expect{Of: "tool", OutputLacks: "reset"}, false},
		{"running", Expect{Of: "tool", Running: &no}, true},
		{"running, wrong", Expect{Of: "tool", Running: &yes}, false},
		{"exit of a hung process", Expect{Of: "client", Exit: intp(0)}, false},
	}
	running := map[string]bool{"client": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass, got := r.check(&tt.e, policy.Stats{}, running, end)
			if pass != tt.pass {
				t.Errorf("%s: pass = %v (got %s), want %v", tt.e.String(), pass, got, tt.pass)
			}
		})
	}
}

func intp(v int) *int { return &v }

func fakeCmd() *exec.Cmd { return &exec.Cmd{} }

func netipAddrPort(addr string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port)
}
