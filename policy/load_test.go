package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

func TestLoad(t *testing.T) {
	p, err := Load(strings.NewReader(`
# an AWS NAT gateway, scaled
timeouts:
  tcp:
    established: 350s
  udp: 2m
capacity: 1000
on_full: evict-lru
refresh: data
orphan: reset
reset_on_expire: true
max_conns_per_source: 10
nat:
  enabled: true
  outside: [198.19.0.1, "fd00:19::1"]
  mapping: address-and-port-dependent
  filtering: address-dependent
  ports: 20000-30000
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeouts.TCP.Established != Duration(350*time.Second) || p.Timeouts.UDP != Duration(2*time.Minute) ||
		p.Capacity != 1000 || conntrack.OnFull(p.OnFull) != conntrack.EvictLRU || conntrack.Refresh(p.Refresh) != conntrack.RefreshData ||
		p.Orphan != OrphanReset || !p.ResetOnExpire || p.MaxConnsPerSource != 10 || !p.NAT.Enabled ||
		len(p.NAT.Outside) != 2 || p.NAT.Mapping != AddressAndPortDependent || p.NAT.Filtering != AddressDependent ||
		p.NAT.Ports != (PortRange{20000, 30000}) {
		t.Fatalf("loaded %+v", p)
	}
	// Keys not given keep Linux's defaults.
	if p.Timeouts.TCP.TimeWait != Duration(120*time.Second) {
		t.Fatalf("time_wait %s", p.Timeouts.TCP.TimeWait)
	}
	// What YAML renders loads back to the same policy.
	q, err := Load(strings.NewReader(p.YAML()))
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, p.YAML())
	}
	if q.YAML() != p.YAML() {
		t.Fatalf("round trip differs:\n%s\n%s", p.YAML(), q.YAML())
	}
}

func TestLoadErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "capacity: 5\ntimeout: 5s\n", `line 2: unknown key "timeout" in the policy`},
		{"unknown nested key", "timeouts:\n  tcp:\n    establised: 5s\n", `line 3: unknown key "establised" in timeouts.tcp`},
		{"negative timeout", "timeouts:\n  tcp:\n    established: -5s\n", "line 3: timeouts.tcp.established: timeout must be positive"},
		{"zero timeout", "timeouts:\n  udp: 0s\n", "line 2: timeouts.udp: timeout must be positive"},
		{"capacity beyond the table", "orphan: reset\ncapacity: 1000000000000\n", "line 2: capacity: must be at most 2147483647 connections (the table's limit), got 1000000000000"},
		{"bare number", "timeouts:\n  icmp: 30\n", `line 2: timeouts.icmp: duration "30" has no unit; write 30s`},
		{"capacity zero", "capacity: 0\n", "line 1: capacity: must be at least 1"},
		{"capacity text", "capacity: lots\n", `line 1: capacity: "lots" is not a whole number`},
		{"nat without address", "nat:\n  enabled: true\n", "nat.outside: NAT needs an outside address"},
		{"bad orphan", "orphan: ignore\n", `line 1: orphan: orphan "ignore" is not one of drop, reset, icmp, pickup`},
		{"bad on_full", "on_full: random\n", `line 1: on_full: on_full "random" is not one of evict-lru, drop-new, early-drop`},
		{"bad address", "nat:\n  enabled: true\n  outside: [300.1.1.1]\n", "line 3: nat.outside[0]:"},
		{"not a mapping", "timeouts: 5s\n", "line 1: timeouts: expected a mapping of keys"},
		{"bad yaml", "capacity: [1\n", "not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	p := Default()
	if err := p.Set("timeouts.tcp.established", "10s"); err != nil {
		t.Fatal(err)
	}
	if p.Timeouts.TCP.Established != Duration(10*time.Second) {
		t.Fatal("not set")
	}
	before := p
	if err := p.Set("timeouts.tcp.established", "-1s"); err == nil || strings.Contains(err.Error(), "line") {
		t.Fatalf("want an error without a line number, got %v", err)
	}
	if err := p.Set("nope", "1"); err == nil || !strings.Contains(err.Error(), `unknown key "nope"`) {
		t.Fatalf("got %v", err)
	}
	if p.Timeouts != before.Timeouts {
		t.Fatal("a failed Set changed the policy")
	}
	if !p.SourceCheck {
		t.Fatal("source_check is off by default")
	}
	if err := p.Set("source_check", "false"); err != nil || p.SourceCheck {
		t.Fatalf("source_check=false: %v, SourceCheck %v", err, p.SourceCheck)
	}
	if err := p.Set("source_check", "maybe"); err == nil || !strings.Contains(err.Error(), "source_check") {
		t.Fatalf("source_check=maybe: %v, want an error naming the key", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"350s": 350 * time.Second, "4m": 4 * time.Minute, "2h4m": 124 * time.Minute, "5d": 120 * time.Hour, "1.5s": 1500 * time.Millisecond} {
		if d, err := ParseDuration(in); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v", in, d, err)
		}
	}
	for _, in := range []string{"", "5", "abc", "-1d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
