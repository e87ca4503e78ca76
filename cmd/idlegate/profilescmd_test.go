package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/idlegate/idlegate/lab"
	"github.com/idlegate/idlegate/policy"
)

// runCLI runs the command line in this process and returns its exit code and output,
// as main would print them.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		errb.WriteString("idlegate: " + err.Error() + "\n")
		return exitCode(err), out.String(), errb.String()
	}
	return 0, out.String(), errb.String()
}

func wantCode(t *testing.T, code int, args ...string) (string, string) {
	t.Helper()
	got, out, errs := runCLI(t, args...)
	if got != code {
		t.Fatalf("idlegate %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	return out, errs
}

// oneSentence checks that an error message is one line naming what it should.
func oneSentence(t *testing.T, stderr string, wants ...string) {
	t.Helper()
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
		t.Errorf("not one sentence: %q", stderr)
	}
	for _, w := range wants {
		if !strings.Contains(stderr, w) {
			t.Errorf("error %q does not contain %q", stderr, w)
		}
	}
}

func TestProfilesList(t *testing.T) {
	out, _ := wantCode(t, 0, "profiles")
	for _, pr := range policy.Profiles() {
		if !strings.Contains(out, pr.Name) || !strings.Contains(out, pr.Description) {
			t.Errorf("profiles does not list %s", pr.Name)
		}
	}
	if !strings.Contains(out, "aws-nat-gateway     350s") {
		t.Errorf("no TCP idle column:\n%s", out)
	}
	out, _ = wantCode(t, 0, "profiles", "-o", "json")
	var rows []profileRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != len(policy.Profiles()) {
		t.Fatalf("json: %v, %d rows", err, len(rows))
	}
	out, _ = wantCode(t, 0, "profiles", "--time-scale", "0.01")
	if !strings.Contains(out, "3.5s (real 350s)") {
		t.Errorf("scaled list lacks the scaled and real value:\n%s", out)
	}
}

func TestProfilesShow(t *testing.T) {
	out, _ := wantCode(t, 0, "profiles", "show", "aws-nat-gateway")
	for _, want := range []string{"AWS NAT Gateway", "reflects: AWS VPC User Guide",
		"350 s idle timeout, fixed", "nat.outside", "198.19.0.1", "unconfirmed"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^timeouts\.tcp\.established +350s `).MatchString(out) {
		t.Errorf("show lacks the established timeout's row:\n%s", out)
	}
	out, _ = wantCode(t, 0, "profiles", "show", "aws-alb", "-o", "json", "--time-scale", "0.1")
	var sp shownProfile
	if err := json.Unmarshal([]byte(out), &sp); err != nil {
		t.Fatal(err)
	}
	for _, v := range sp.Values {
		if v.Source == "" {
			t.Errorf("%s has no source", v.Key)
		}
		if v.Key == "timeouts.tcp.established" && (v.Value.Value != "60s" || v.Scaled != "6s") {
			t.Errorf("established %+v", v)
		}
		if v.Key == "refresh" && (v.Value.Value != "data" || !v.FromProfile) {
			t.Errorf("refresh %+v", v)
		}
	}
}

func TestProfilesCheck(t *testing.T) {
	out, _ := wantCode(t, 0, "profiles", "check", "aws-nat-gateway")
	for _, want := range []string{
		"RFC 5382 REQ-5 (MUST): The established connection idle-timeout MUST NOT be less than 2 hours 4 minutes; here timeouts.tcp.established 350s",
		"RFC 4787 REQ-5 (MUST)", "RFC 5508 REQ-2 (MUST)", "RFC 5382 REQ-4 (MUST)", "aws-nat-gateway breaks 7 of 12 requirements checked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	out, _ = wantCode(t, 0, "profiles", "check", "rfc-minimum")
	if strings.Contains(out, "(MUST)") {
		t.Errorf("rfc-minimum breaks a MUST:\n%s", out)
	}
	out, _ = wantCode(t, 0, "profiles", "check", "aws-nlb", "-o", "json")
	var c policy.Compliance
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.NAT || len(c.Violations) == 0 {
		t.Fatalf("json %v %+v", err, c)
	}
}

func TestUnknownProfile(t *testing.T) {
	for _, args := range [][]string{
		{"profiles", "show", "aws-nat-gatway"},
		{"profiles", "check", "aws-nat-gatway"},
		{"advise", "--profile", "aws-nat-gatway"},
		{"replay", "x.pcap", "--profile", "linux-conntrack,aws-nat-gatway"},
		{"lab", "up", "--profile", "aws-nat-gatway"},
	} {
		_, errs := wantCode(t, exitUsage, args...)
		oneSentence(t, errs, `unknown profile "aws-nat-gatway"`, "aws-nat-gateway")
	}
	_, errs := wantCode(t, exitUsage, "profiles", "show")
	oneSentence(t, errs, "profile name")
	_, errs = wantCode(t, exitUsage, "profiles", "--time-scale", "0")
	oneSentence(t, errs, "--time-scale")
}

// TestProfileNATMatchesLab: NAT profiles leave by the lab's outside addresses, which
// policy writes down without importing lab.
func TestProfileNATMatchesLab(t *testing.T) {
	got := policy.ProfileNATOutside()
	if got[0] != lab.NATAddr4 || got[1] != lab.NATAddr6 {
		t.Fatalf("profiles NAT to %v, the lab's outside addresses are %v and %v", got, lab.NATAddr4, lab.NATAddr6)
	}
}
