package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/idlegate/idlegate/policy"
)

func TestAdvise(t *testing.T) {
	out, _ := wantCode(t, 0, "advise", "--profile", "aws-alb")
	for _, want := range []string{"keepalive advice for profile aws-alb", "ESTABLISHED idle timeout 60s", "warning: this box ignores TCP keepalive probes",
		"application data", "sysctl: every socket with SO_KEEPALIVE on  [cannot help here]", "ServerAliveInterval 30", "keepaliveTime=30000", "margin rule"} {
		if !strings.Contains(out, want) {
			t.Errorf("advise aws-alb lacks %q:\n%s", want, out)
		}
	}
	out, _ = wantCode(t, 0, "advise", "--profile", "aws-nat-gateway", "-o", "json")
	var a struct {
		Profile   string  `json:"profile"`
		Timeout   float64 `json:"timeout_s"`
		Keepalive struct {
			Idle     float64 `json:"idle_s"`
			Interval float64 `json:"interval_s"`
			Count    int     `json:"count"`
		} `json:"keepalive"`
		Settings []policy.AdviceItem `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Keepalive.Idle != 175 || a.Keepalive.Interval != 43 || a.Keepalive.Count != 3 ||
		a.Timeout != 350 || a.Profile != "aws-nat-gateway" || len(a.Settings) < 20 {
		t.Fatalf("json %v %+v", err, a)
	}
	out, _ = wantCode(t, 0, "advise", "--profile", "aws-nat-gateway", "--time-scale", "0.01")
	if !strings.Contains(out, "3.5s (real 350s)") || !strings.Contains(out, "net.ipv4.tcp_keepalive_time = 1") ||
		!strings.Contains(out, "at real time, idle 175s, interval 43s, 3 probes") {
		t.Errorf("scaled advice:\n%s", out)
	}
	_, errs := wantCode(t, exitUsage, "advise")
	oneSentence(t, errs, "--profile", "--set", "--name")
}

// TestAdviseSetAlone is issue 17's report: --set alone is accepted (Linux defaults
// underneath), and a 3 to 6 s box never gets an interval of 0, in the text or the JSON.
func TestAdviseSetAlone(t *testing.T) {
	for _, est := range []string{"3s", "5s", "6s"} {
		out, _ := wantCode(t, 0, "advise", "--set", "timeouts.tcp.established="+est)
		if !strings.Contains(out, "keepalive advice for Linux defaults with --set timeouts.tcp.established="+est) {
			t.Errorf("%s: header:\n%s", est, out)
		}
		for _, bad := range []string{"tcp_keepalive_intvl = 0", "keepalives_interval=0", "Interval: 0 * time.Second"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: prints %q", est, bad)
			}
		}
		js, _ := wantCode(t, 0, "advise", "--set", "timeouts.tcp.established="+est, "-o", "json")
		var a struct {
			Keepalive struct {
				Interval float64 `json:"interval_s"`
			} `json:"keepalive"`
			Settings []policy.AdviceItem `json:"settings"`
		}
		if err := json.Unmarshal([]byte(js), &a); err != nil || a.Keepalive.Interval < 1 {
			t.Fatalf("%s: json %v %+v", est, err, a.Keepalive)
		}
		for _, it := range a.Settings {
			for _, line := range strings.Split(it.Config, "\n") {
				if !strings.Contains(out, line) {
					t.Errorf("%s: %s: JSON line %q is not in the text", est, it.ID, line)
				}
			}
		}
	}
	out, _ := wantCode(t, 0, "advise", "--set", "timeouts.tcp.established=2s")
	if !strings.Contains(out, "no TCP keepalive setting fits") || strings.Contains(out, "keepalives_idle") {
		t.Errorf("2s:\n%s", out)
	}
	_, errs := wantCode(t, exitUsage, "advise", "--set", "timeouts.tcp.established")
	oneSentence(t, errs, "KEY=VALUE")
	_, errs = wantCode(t, exitUsage, "advise", "--name", "x", "--set", "orphan=drop")
	oneSentence(t, errs, "--name", "policy set")
}
