package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAdviseName: advise --name reads the live policy of a running lab.
func TestAdviseName(t *testing.T) {
	needRoot(t)
	if r := want(t, 4, "advise", "--name", uniqueName("nolab")); !strings.Contains(r.stderr, "lab") {
		t.Errorf("no such lab: %v", r)
	}
	name := uniqueName("adv")
	cleanupLab(t, name)
	want(t, 0, "lab", "up", "--name", name, "--set", "timeouts.tcp.established=8s", "--set", "orphan=reset", "--detach")
	out := want(t, 0, "advise", "--name", name).stdout
	if !strings.Contains(out, "keepalive advice for lab "+name) || !strings.Contains(out, "keepalive: idle 4s, interval 1s, 3 probes") ||
		!strings.Contains(out, "answered with a RST") {
		t.Errorf("advise --name:\n%s", out)
	}
	want(t, 0, "policy", "set", "--name", name, "timeouts.tcp.established=60s", "orphan=drop")
	out = want(t, 0, "advise", "--name", name, "-o", "json").stdout
	var a struct {
		Source    string  `json:"source"`
		Timeout   float64 `json:"timeout_s"`
		Keepalive struct {
			Idle float64 `json:"idle_s"`
		} `json:"keepalive"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Timeout != 60 || a.Keepalive.Idle != 30 ||
		!strings.Contains(a.Source, name) || !strings.Contains(strings.Join(a.Warnings, " "), "black hole") {
		t.Errorf("advise --name after policy set: %v %+v", err, a)
	}
}
