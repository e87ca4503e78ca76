package idlegatetest

import (
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/policy"
)

func TestBuild(t *testing.T) {
	aws, err := policy.ProfilePolicy("aws-nat-gateway")
	if err != nil {
		t.Fatal(err)
	}
	custom := policy.Default()
	custom.Capacity = 100
	tests := []struct {
		name        string
		opts        []Option
		established time.Duration
		orphan      string
		profile     string
		scale       float64
		capacity    int
		err         string
	}{
		{name: "none is Linux's defaults", established: 5 * 24 * time.Hour, orphan: "drop", scale: 1, capacity: policy.Default().Capacity},
		{name: "profile", opts: []Option{Profile("aws-nat-gateway")}, established: 350 * time.Second, orphan: aws.Orphan.String(), profile: "aws-nat-gateway", scale: 1, capacity: aws.Capacity},
		{
			name: "sets apply over the profile whatever the order", opts: []Option{Set("orphan", "icmp"), TimeScale(0.01), Profile("aws-nat-gateway"), Set("timeouts.tcp.established", "60s")},
			established: 60 * time.Second, orphan: "icmp", profile: "aws-nat-gateway", scale: 0.01, capacity: aws.Capacity,
		},
		{name: "later set wins", opts: []Option{Set("orphan", "icmp"), Set("orphan", "reset")}, established: 5 * 24 * time.Hour, orphan: "reset", scale: 1, capacity: policy.Default().Capacity},
		{name: "from policy", opts: []Option{FromPolicy(custom)}, established: 5 * 24 * time.Hour, orphan: "drop", scale: 1, capacity: 100},
		{name: "two bases", opts: []Option{Profile("aws-nat-gateway"), FromPolicy(custom)}, err: `Profile("aws-nat-gateway") and FromPolicy both give the policy to start from`},
		{name: "unknown profile", opts: []Option{Profile("aws")}, err: `unknown profile "aws"; known profiles: aws-alb,`},
		{name: "unknown key", opts: []Option{Set("timeouts.tcp.establised", "1s")}, err: `Set("timeouts.tcp.establised", "1s"): unknown key "establised"`},
		{name: "bad value", opts: []Option{Set("orphan", "rst")}, err: `Set("orphan", "rst"): orphan: orphan "rst" is not one of drop, reset, icmp, pickup`},
		{name: "scale 0", opts: []Option{TimeScale(0)}, err: "time scale 0 must be a number above 0"},
		{name: "nil option", opts: []Option{nil}, err: "a nil Option"},
		{name: "invalid policy", opts: []Option{FromPolicy(policy.Policy{})}, err: "FromPolicy: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, profile, scale, err := build(tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "idlegatetest: ") {
					t.Fatalf("error %v, want one starting idlegatetest: and containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(p.Timeouts.TCP.Established); got != tc.established {
				t.Errorf("established %v, want %v", got, tc.established)
			}
			if p.Orphan.String() != tc.orphan || profile != tc.profile || scale != tc.scale || p.Capacity != tc.capacity {
				t.Errorf("orphan %s profile %q scale %g capacity %d, want %s %q %g %d", p.Orphan, profile, scale, p.Capacity, tc.orphan, tc.profile, tc.scale, tc.capacity)
			}
		})
	}
}

// TestApplySets is what SetPolicy does: the sets apply in order over the policy in
// force, all or none.
func TestApplySets(t *testing.T) {
	cur, err := policy.ProfilePolicy("azure-lb")
	if err != nil {
		t.Fatal(err)
	}
	c, err := collect([]Option{Set("orphan", "reset"), Set("timeouts.tcp.established", "10s"), Set("orphan", "icmp")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.applySets(cur)
	if err != nil || p.Orphan.String() != "icmp" || time.Duration(p.Timeouts.TCP.Established) != 10*time.Second || p.Capacity != cur.Capacity {
		t.Errorf("applySets: orphan %s established %s capacity %d, %v", p.Orphan, p.Timeouts.TCP.Established, p.Capacity, err)
	}
	c, _ = collect([]Option{Set("orphan", "reset"), Set("orphan", "bogus")})
	p, err = c.applySets(cur)
	if err == nil || p.Orphan != cur.Orphan {
		t.Errorf("a failed set returned orphan %s, %v; want the policy in force and an error", p.Orphan, err)
	}
}

func TestCheckLiteral(t *testing.T) {
	for _, tc := range []struct{ addr, err string }{
		{"198.19.0.2:7000", ""},
		{"[fd00:19::2]:7000", ""},
		{":7000", ""},
		{"db.internal:5432", `Dial "db.internal:5432": give an IP address (the server is 198.19.0.2 or [fd00:19::2]); no DNS runs in the lab`},
		{"198.19.0.2", `Dial "198.19.0.2": want HOST:PORT`},
	} {
		err := checkLiteral("Dial", tc.addr)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("checkLiteral(%q) = %v, want %q", tc.addr, err, tc.err)
		}
	}
}
