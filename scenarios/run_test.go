package scenarios

// Namespace tests: each run builds its own lab, drawn here once for all of them:
//
//	 scNNNN-K-client netns           test process (root netns)          scNNNN-K-server netns
//	+------------------+          +----------------------------+       +------------------+
//	| agents, ssh, ... |<-- TUN ->|  gateway: policy.Engine    |<- TUN->| servers, sshd    |
//	| 198.18.0.2       |          |  (subscribed for events)   |       | 198.19.0.2       |
//	+------------------+          +----------------------------+       +------------------+
//
// The agents run from an idlegate binary built once by buildBinary. Run removes its lab
// and processes itself; each test also checks that it did.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegate/idlegate/lab"
)

// needRoot skips a test that needs root, except in CI, where a skip would hide it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root for network namespaces, and CI must not skip it: run the tests as root")
	}
	t.Skip("needs root for network namespaces; run as root (make test does in CI)")
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds the idlegate binary that runs the agents, once.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "idlegate-scenarios-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "idlegate")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		out, err := exec.Command(goTool, "build", "-o", binPath, "../cmd/idlegate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build idlegate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// run plays s and checks that its lab is gone afterwards.
func run(t *testing.T, ctx context.Context, s *Scenario) *Report {
	t.Helper()
	name := NewLabName()
	t.Cleanup(func() { lab.Cleanup(name, "") })
	rep, err := Run(ctx, s, Options{LabName: name, Binary: buildBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	if lab.Exists(name, "") {
		t.Errorf("lab %s is still there after Run", name)
	}
	if t.Failed() || !rep.Pass {
		var b strings.Builder
		rep.WriteText(&b)
		t.Log("\n" + b.String())
	}
	return rep
}

func check(rep *Report, expect string) *Check {
	for i := range rep.Checks {
		if strings.HasPrefix(rep.Checks[i].Expect, expect) {
			return &rep.Checks[i]
		}
	}
	return nil
}

// TestInvertedStoryFails plays tcp-keepalive-saves as written and with its keepalive
// removed: the first passes, the second must fail on the very expectations that tell
// the story (the keepalive client survives; only one entry expires).
func TestInvertedStoryFails(t *testing.T) {
	needRoot(t)
	buildBinary(t)
	orig, err := Lookup("tcp-keepalive-saves")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("as written", func(t *testing.T) {
		t.Parallel()
		rep := run(t, context.Background(), orig)
		if !rep.Pass || rep.Verdict != "PASS" {
			t.Fatalf("verdict %s: %s", rep.Verdict, rep.VerdictLine())
		}
	})
	t.Run("keepalive removed", func(t *testing.T) {
		t.Parallel()
		src, err := Source("tcp-keepalive-saves")
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(src), `--keepalive-idle, 1s, --keepalive-intvl, 1s, --keepalive-cnt, "3", `, "", 1)
		if text == string(src) {
			t.Fatal("the keepalive flags of ka are not where this test expects them")
		}
		inv, err := Parse("inverted.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		rep := run(t, context.Background(), inv)
		if rep.Pass || rep.Verdict != "FAIL" || !strings.HasPrefix(rep.VerdictLine(), "FAIL") {
			t.Fatalf("the inverted story passed: %s", rep.VerdictLine())
		}
		for _, want := range []struct{ expect, got string }{
			{"ka outcome survived", "reset"},
			{"gateway expired (port 7000) = 1", "2"},
			{"gateway keepalive_probes >= 5", "0"},
		} {
			c := check(rep, want.expect)
			if c == nil {
				t.Fatalf("no expectation %q in %+v", want.expect, rep.Checks)
			}
			if c.Pass || !strings.Contains(c.Got, want.got) {
				t.Errorf("%s: pass %v got %q, want a failure with %q", c.Expect, c.Pass, c.Got, want.got)
			}
		}
		if c := check(rep, "bare outcome reset"); c == nil || !c.Pass {
			t.Errorf("the untouched half of the story should still hold: %+v", c)
		}
	})
}

// stuck is a story that would run for a minute: the test interrupts it.
const stuck = `name: stuck
title: t
concept: c
processes:
  - name: cancelme-srv
    side: server
    agent: tcp-echo-server
    args: [--listen, "${server4}:7000"]
  - name: cancelme-cli
    side: client
    agent: tcp-client
    args: [--connect, "${server4}:7000", --pattern, "send:hi,hold:60s"]
  - name: cancelme-sh
    side: server
    command: {sh: "sleep 60 & sleep 60"}
steps:
  - start: [cancelme-srv, cancelme-sh]
  - wait: 300ms
  - start: cancelme-cli
  - wait_exit: cancelme-cli
    timeout: 60s
expect:
  - of: cancelme-cli
    outcome: survived
`

// TestInterruptRemovesEverything cancels a run in the middle (what Ctrl-C does): Run
// returns a failed report, and no lab nor process of the story is left.
func TestInterruptRemovesEverything(t *testing.T) {
	needRoot(t)
	buildBinary(t) // before the clock starts
	s, err := Parse("stuck.yaml", []byte(stuck))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2*time.Second, cancel)
	start := time.Now()
	rep := run(t, ctx, s)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run took %v after the interrupt", d)
	}
	if rep.Pass || !strings.Contains(rep.Error, "interrupted") {
		t.Errorf("an interrupted run fails and says so: pass %v error %q", rep.Pass, rep.Error)
	}
	// A process SIGKILLed by the cleanup can take a moment to leave the process
	// table on a loaded machine; one that is still there after a few seconds was
	// left behind (the story's processes would hold for a minute).
	left := processesNamed("cancelme")
	for wait := time.Now().Add(3 * time.Second); len(left) > 0 && time.Now().Before(wait); {
		time.Sleep(100 * time.Millisecond)
		left = processesNamed("cancelme")
	}
	if len(left) > 0 {
		t.Errorf("processes left after the interrupt: %v", left)
	}
}

// processesNamed lists the pids whose command line contains s, except this process.
func processesNamed(s string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		if strings.Contains(string(b), s) {
			// The state and parent say whether it is still running and who owns it.
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			state := string(st)
			if i := strings.LastIndexByte(state, ')'); i >= 0 {
				state = strings.Join(strings.Fields(state[i+1:])[:2], " ppid ")
			}
			out = append(out, e.Name()+" ["+state+"] "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestParallelRunsDoNotCollide plays the same story twice at once.
func TestParallelRunsDoNotCollide(t *testing.T) {
	needRoot(t)
	s, err := Lookup("idle-reset")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			if rep := run(t, context.Background(), s); !rep.Pass {
				t.Error(rep.VerdictLine())
			}
		})
	}
}

// TestMissingProgram: a command that is not installed ends the story with a message
// that says so, and the run fails.
func TestMissingProgram(t *testing.T) {
	needRoot(t)
	text := strings.Replace(stuck, `command: {sh: "sleep 60 & sleep 60"}`, `command: [idlegate-no-such-program]`, 1)
	s, err := Parse("missing.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, context.Background(), s)
	if rep.Pass || !strings.Contains(rep.Error, "not installed") {
		t.Errorf("pass %v error %q, want a failure naming the missing program", rep.Pass, rep.Error)
	}
}

// varsStory has ${...} variables in a file, setup commands, a command and agent args.
const varsStory = `name: vars
title: t
concept: c
files:
  in: "lab ${lab}"
setup:
  - [cp, "${dir}/in", "${dir}/out"]
  - {sh: "test -f ${dir}/out"}
processes:
  - name: server
    side: server
    agent: tcp-echo-server
    args: [--listen, "${server4}:7000"]
  - name: cat
    side: client
    command: [cat, "${dir}/out"]
steps:
  - start: [server, cat]
expect:
  - of: cat
    output: lab
`

// TestRunLeavesScenarioUnchanged prepares the same parsed scenario twice, as a second
// run of a cached playbook scenario does: each run gets its own ${dir} and ${lab}, and
// the scenario still holds its variables afterwards. No lab: no root needed.
func TestRunLeavesScenarioUnchanged(t *testing.T) {
	s, err := Parse("vars.yaml", []byte(varsStory))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := Parse("vars.yaml", []byte(varsStory))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		dir := t.TempDir()
		r := &runner{sc: s, opts: Options{Binary: "/x/idlegate"}, dir: dir, procs: map[string]*proc{}, tl: &timeline{start: time.Now()},
			vars: map[string]string{"dir": dir, "lab": fmt.Sprint("lab", i), "server4": lab.ServerAddr4.String()}}
		r.prepare()
		if err := r.setup(context.Background()); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "out")); err != nil || string(b) != fmt.Sprint("lab lab", i) {
			t.Errorf("run %d: setup wrote %q, %v", i, b, err)
		}
		if got, want := r.procs["cat"].argv, []string{"cat", dir + "/out"}; !reflect.DeepEqual(got, want) {
			t.Errorf("run %d: cat argv %q, want %q", i, got, want)
		}
		want := []string{"/x/idlegate", "agent", "tcp-echo-server", "--name", "server", "--listen", lab.ServerAddr4.String() + ":7000"}
		if got := r.procs["server"].argv; !reflect.DeepEqual(got, want) {
			t.Errorf("run %d: server argv %q, want %q", i, got, want)
		}
		if !reflect.DeepEqual(s.Setup, orig.Setup) || !reflect.DeepEqual(s.Files, orig.Files) ||
			!reflect.DeepEqual(*s.Processes[1].Command, *orig.Processes[1].Command) ||
			!reflect.DeepEqual(s.Processes[0].Args, orig.Processes[0].Args) {
			t.Fatalf("run %d changed the scenario: setup %q, command %q, args %q", i, s.Setup, s.Processes[1].Command.Argv, s.Processes[0].Args)
		}
	}
}
