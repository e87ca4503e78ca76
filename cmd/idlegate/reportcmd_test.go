package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReportCmdCapture(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeCapture(t, layers.LinkTypeEthernet)
	// What crossed aws-nat-gateway, as idlegate's pcapng: forwarded packets and the
	// RST it sent, with verdict comments.
	crossed := filepath.Join(dir, "crossed.pcapng")
	wantCode(t, 0, "replay", path, "--profile", "aws-nat-gateway", "--write", crossed)
	page := filepath.Join(dir, "crossed.html")
	out, _ := wantCode(t, 0, "report", crossed, "--profile", "aws-nat-gateway", "--html", page)
	if !strings.Contains(out, "wrote "+page) {
		t.Errorf("report does not say what it wrote:\n%s", out)
	}
	html := readFile(t, page)
	for _, want := range []string{`<svg class="seq"`, `data-lifeline="idlegate"`, `data-kind="injected"`, `data-label="SYN"`,
		"the gateway&#39;s policy as given: profile aws-nat-gateway", `class="timer"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// To stdout with -.
	out, _ = wantCode(t, 0, "report", crossed, "--html", "-")
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || strings.Contains(out, "wrote ") {
		t.Errorf("--html - does not write the page alone to stdout: %.80q", out)
	}
}

func TestReportCmdErrors(t *testing.T) {
	dir := t.TempDir()
	plain, _ := writeCapture(t, layers.LinkTypeEthernet)
	page := filepath.Join(dir, "x.html")
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"report", "--html", page}, []string{"give a capture the gateway recorded", "--name LAB"}},
		{[]string{"report", plain, "--name", "lab1", "--html", page}, []string{"not both"}},
		{[]string{"report", plain}, []string{"--html FILE"}},
		{[]string{"report", plain, "--html", page}, []string{"app.pcap", "not a capture recorded by the idlegate gateway", "idlegate replay"}},
		{[]string{"report", plain, "--watch", "5s", "--html", page}, []string{"--watch is for a running lab"}},
		{[]string{"report", filepath.Join(dir, "missing.pcapng"), "--html", page}, []string{"cannot open capture", "missing.pcapng"}},
		{[]string{"report", "--name", "lab1", "--set", "orphan=reset", "--html", page}, []string{"a running lab has its own policy"}},
		{[]string{"report", plain, "--set", "orphan", "--html", page}, []string{`--set "orphan" is not KEY=VALUE`}},
		{[]string{"replay", plain, "--profile", "pf", "--html", "-"}, []string{"give a file name"}},
	} {
		_, errs := wantCode(t, exitUsage, tc.args...)
		oneSentence(t, errs, tc.wants...)
	}
	if _, err := os.Stat(page); err == nil {
		t.Error("a failed report left a file behind")
	}
}

func TestReplayCmdHTML(t *testing.T) {
	path, late := writeCapture(t, layers.LinkTypeEthernet)
	page := filepath.Join(t.TempDir(), "app.html")
	out, _ := wantCode(t, 0, "replay", path, "--profile", "linux-conntrack,aws-nat-gateway", "--html", page)
	if !strings.Contains(out, "wrote "+page) || !strings.Contains(out, "breaks on aws-nat-gateway at packet 6") {
		t.Errorf("replay --html output:\n%s", out)
	}
	html := readFile(t, page)
	for _, want := range []string{`<table class="matrix">`, `data-profile="linux-conntrack" data-outcome="survived"`,
		`data-profile="aws-nat-gateway" data-outcome="reset"><b>reset @6</b>`, `data-kind="dropped"`, `data-reason="orphan"`,
		`<g class="gap" data-gap="350s"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the replay report lacks %q", want)
		}
	}
	if late != 6 {
		t.Fatalf("late query at record %d", late)
	}
	// -o json keeps stdout JSON: the word on the file goes to stderr.
	out, errs := wantCode(t, 0, "replay", path, "--profile", "aws-nat-gateway", "--html", page, "-o", "json")
	if !strings.HasPrefix(strings.TrimSpace(out), "{") || !strings.Contains(errs, "wrote "+page) {
		t.Errorf("-o json with --html: stdout %.60q, stderr %q", out, errs)
	}
}

func TestTermWidth(t *testing.T) {
	t.Setenv("COLUMNS", "101")
	if w := termWidth(); w != 101 {
		t.Errorf("COLUMNS=101 gives width %d", w)
	}
	t.Setenv("COLUMNS", "wide")
	if w := termWidth(); w <= 0 {
		t.Errorf("a bad COLUMNS gives width %d", w)
	}
}
