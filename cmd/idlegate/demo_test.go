package main_test

// The demo's tests play its stories in labs of their own (a unique --name), through the
// same runner as `idlegate scenario run`; each checks that its lab is gone afterwards.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cli "github.com/idlegate/idlegate/cmd/idlegate"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios"
)

// section returns the part of out from the line "=== NAME:" to the next "=== " line.
func section(out, name string) string {
	i := strings.Index(out, "=== "+name+":")
	if i < 0 {
		return ""
	}
	rest := out[i+1:]
	if j := strings.Index(rest, "\n=== "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestCLIDemo runs `idlegate demo` as `make demo` does: exit 0, the connection without
// keepalive reset with ECONNRESET, the one with keepalive echoed, and nothing left.
func TestCLIDemo(t *testing.T) {
	needRoot(t)
	name := uniqueName("demo-")
	cleanupLab(t, name)
	r := idlegate(t, "demo", "--name", name)
	if r.code != 0 {
		t.Fatalf("idlegate demo: exit %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	for _, s := range []struct{ story, want string }{
		{"idle-reset", "PASS idle-reset"},
		{"idle-reset", "ok   client outcome reset at >= 5s <= 8s: got c1 reset (ECONNRESET)"},
		{"idle-reset", "client/c1 ERROR read: ECONNRESET"},
		{"tcp-keepalive-saves", "PASS tcp-keepalive-saves"},
		{"tcp-keepalive-saves", "ok   ka outcome survived: got c1 survived"},
		{"tcp-keepalive-saves", "keepalive probe tcp"},
	} {
		if !strings.Contains(section(r.stdout, s.story), s.want) {
			t.Errorf("story %s lacks %q", s.story, s.want)
		}
	}
	if !strings.Contains(r.stdout, "\nresult: PASS") {
		t.Errorf("no line \"result: PASS\"")
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
	if left := leftovers(t, name); len(left) > 0 {
		t.Errorf("the demo left %v behind", left)
	}
}

// TestDemoFailsWhenAStoryFails plays the demo with idle-reset's client given TCP
// keepalive: it survives where the story expects a reset, so the demo must say FAIL
// and exit 1.
func TestDemoFailsWhenAStoryFails(t *testing.T) {
	needRoot(t)
	src, err := scenarios.Source("idle-reset")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), `--hang-after, 5s]`, `--keepalive-idle, 1s, --keepalive-intvl, 1s, --keepalive-cnt, "3", --hang-after, 5s]`, 1)
	if text == string(src) {
		t.Fatal("idle-reset's client args are not where this test expects them")
	}
	kept, err := scenarios.Parse("idle-reset-kept-alive.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("demo-")
	cleanupLab(t, name)
	var out bytes.Buffer
	err = cli.RunDemo(context.Background(), &out, name, bin, []*scenarios.Scenario{kept})
	if !errors.Is(err, cli.ErrDemoFailed) || cli.ExitCode(err) != 1 {
		t.Errorf("a demo whose story failed returned %v (exit %d), want %v (exit 1)", err, cli.ExitCode(err), cli.ErrDemoFailed)
	}
	for _, want := range []string{
		"FAIL client outcome reset at >= 5s <= 8s: got c1 survived",
		"FAIL idle-reset",
		"result: FAIL — idle-reset did not happen",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "result: PASS") {
		t.Errorf("a failed demo printed result: PASS")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out.String())
	}
	if left := leftovers(t, name); len(left) > 0 {
		t.Errorf("the demo left %v behind", left)
	}
}

// TestCLIDemoNotRoot: without root the demo refuses with exit 3 and one line naming
// the fix, before it prints anything. As root, the test runs the binary as nobody.
func TestCLIDemoNotRoot(t *testing.T) {
	t.Parallel()
	exe := bin
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// nobody cannot enter the test's private temporary directories.
		dir, err := os.MkdirTemp("", "idlegate-demo-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		exe = filepath.Join(dir, "idlegate")
		if err := copyFile(bin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "demo", "--name", uniqueName("demo-"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("demo without root: %v, stderr %q; want exit 3", err, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "idlegate: ") || !strings.Contains(msg, "run idlegate as root") {
		t.Errorf("stderr %q: want one line that says to run idlegate as root", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("demo without root printed %q before refusing", stdout.String())
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestDemoHelpMatchesStories: `idlegate demo --help` names every story the demo plays
// and the policy they share (3 s, RST), so the help cannot drift from the playbook.
func TestDemoHelpMatchesStories(t *testing.T) {
	help := cli.NewDemoCmd().Long
	for _, name := range cli.DemoStories {
		s, err := scenarios.Lookup(name)
		if err != nil {
			t.Fatalf("the demo plays %q: %v", name, err)
		}
		if !strings.Contains(help, name+":") {
			t.Errorf("demo --help does not name the story %s", name)
		}
		p := s.Policy()
		if time.Duration(p.Timeouts.TCP.Established) != 3*time.Second || p.Orphan != policy.OrphanReset {
			t.Errorf("%s: established timeout %s, orphan %s; demo --help says 3 s and a RST",
				name, time.Duration(p.Timeouts.TCP.Established), p.Orphan)
		}
	}
	if !strings.Contains(help, "idle for 3 s") || !strings.Contains(help, "RST") {
		t.Errorf("demo --help no longer says 3 s and RST; update this test with it")
	}
}
