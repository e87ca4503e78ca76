package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `idlegate report --name LAB` draws a running lab: its events while it watches (with
// verdict_events on, every packet an arrow), its table and counters.
//
//	NAME-client netns          idlegate lab (detached gateway)          NAME-server netns
//	  ping 198.19.0.2  ---->   verdict_events=true, report --watch  ---->  kernel echo
func TestCLIReportLive(t *testing.T) {
	needRoot(t)
	name := uniqueName("rep-")
	cleanupLab(t, name)
	want(t, 0, "lab", "up", "--name", name, "--detach", "--set", "verdict_events=true")
	page := filepath.Join(t.TempDir(), "lab.html")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := exec.CommandContext(ctx, bin, "report", "--name", name, "--watch", "3s", "--html", page)
	var stdout, stderr bytes.Buffer
	rep.Stdout, rep.Stderr = &stdout, &stderr
	if err := rep.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the report subscribes first
	want(t, 0, "lab", "exec", "--name", name, "client", "--", "ping", "-c", "3", "-i", "0.2", "-W", "1", "198.19.0.2")
	if err := rep.Wait(); err != nil {
		t.Fatalf("report --name: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "wrote "+page) {
		t.Errorf("report does not say what it wrote: %q", stdout.String())
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{`data-kind="live"`, `data-lifeline="idlegate"`, `<section id="live">`,
		`data-from="client" data-to="server" data-label="icmp" data-verdict="forward" data-reason="new"`,
		`data-from="server" data-to="client" data-label="icmp" data-verdict="forward"`, "NEW icmp 198.18.0.2 -&gt; 198.19.0.2"} {
		if !strings.Contains(html, want) {
			t.Errorf("the live report lacks %q", want)
		}
	}
	// A lab that is not there is one sentence and exit 4.
	r := want(t, 4, "report", "--name", uniqueName("none-"), "--html", page)
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("not one sentence: %q", r.stderr)
	}
}
