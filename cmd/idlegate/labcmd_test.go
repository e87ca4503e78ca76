package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idlegate/idlegate/capture"
	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/tun"
)

// TestDetachedArgs: the detached child gets every flag the user set, --detach
// excepted, repeated flags repeated, and file paths absolute.
func TestDetachedArgs(t *testing.T) {
	c := newLabUpCmd()
	if err := c.ParseFlags([]string{"--name", "pool", "--config", "aws.yaml", "--set", "orphan=reset",
		"--set", "timeouts.udp=5s", "--time-scale", "0.01", "--detach", "--pcap", "run.pcapng", "--force", "--mtu", "1400"}); err != nil {
		t.Fatal(err)
	}
	config, _ := filepath.Abs("aws.yaml")
	pcap, _ := filepath.Abs("run.pcapng")
	got := detachedArgs(c)
	want := []string{"lab", "up", "--config=" + config, "--force=true", "--mtu=1400", "--name=pool", "--pcap=" + pcap,
		"--set=orphan=reset", "--set=timeouts.udp=5s", "--time-scale=0.01"}
	if !slices.Equal(got, want) {
		t.Errorf("detachedArgs:\n got %q\nwant %q", got, want)
	}
	// Flags left at their defaults stay out.
	c = newLabUpCmd()
	if err := c.ParseFlags([]string{"--detach"}); err != nil {
		t.Fatal(err)
	}
	if got := detachedArgs(c); !slices.Equal(got, []string{"lab", "up"}) {
		t.Errorf("detachedArgs with only --detach = %q, want [lab up]", got)
	}
}

// TestExitCodes: the codes main.go documents.
func TestExitCodes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{lab.CheckName("Bad_Name"), exitUsage},
		{usagef("bad"), exitUsage},
		{fmt.Errorf("start lab: %w", capture.ErrRefused), exitUsage},
		{lab.ErrNotRoot, exitEnv},
		{fmt.Errorf("open: %w", tun.ErrNoTUN), exitEnv},
		{lab.NoSuchLab("x"), exitState},
		{errDemoFailed, exitFailure},
		{detachedError{"x", 3}, 3},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestDemoBadName: a bad --name is bad usage (exit 2), refused before the demo
// prints anything.
func TestDemoBadName(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"demo", "--name", "Bad_Name"})
	err := root.Execute()
	if code := exitCode(err); code != exitUsage {
		t.Errorf("demo --name Bad_Name: %v, exit %d; want %d", err, code, exitUsage)
	}
	if out.Len() != 0 {
		t.Errorf("demo --name Bad_Name printed %q before failing", out.String())
	}
	if def := newDemoCmd().Flags().Lookup("name").DefValue; def != "idlegate-demo" {
		t.Errorf("demo --name defaults to %q, want idlegate-demo", def)
	}
}

// TestLabSummarySaysWhereItIsNotLinux: lab up says which defaults differ from the
// kernel's own behaviour and why (issue 15, point 6).
func TestLabSummarySaysWhereItIsNotLinux(t *testing.T) {
	var b bytes.Buffer
	printLabSummary(&b, "x", "/run/idlegate/x", policy.Default(), 1, "")
	out := b.String()
	for _, want := range []string{"orphan drop (kernel pickup)", "invalid drop (kernel accept)",
		"nf_conntrack_tcp_loose=1", "ct state invalid", "--profile linux-conntrack"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	p, _ := policy.ProfilePolicy("linux-conntrack")
	b.Reset()
	printLabSummary(&b, "x", "/run/idlegate/x", p, 1, "")
	if !strings.Contains(b.String(), "behaves as nf_conntrack with no ruleset") {
		t.Errorf("linux-conntrack summary:\n%s", b.String())
	}
}
