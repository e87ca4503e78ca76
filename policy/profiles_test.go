package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// notes is transcribed from ../shared/middlebox-timeouts.md, the source of truth for
// profile values: per profile, the values that file states, as it states them. A
// value written here must be read back from the profile's policy unchanged.
var notes = map[string]map[string]string{
	// "Linux netfilter (nf_conntrack) defaults, seconds"
	"linux-conntrack": {
		"timeouts.tcp.syn_sent": "120s", "timeouts.tcp.syn_recv": "60s", "timeouts.tcp.established": "432000s",
		"timeouts.tcp.fin_wait": "120s", "timeouts.tcp.close_wait": "60s", "timeouts.tcp.last_ack": "30s",
		"timeouts.tcp.time_wait": "120s", "timeouts.tcp.close": "10s",
		"timeouts.udp": "30s", "timeouts.udp_stream": "120s", "timeouts.icmp": "30s", "timeouts.generic": "600s",
		"orphan":      "pickup",     // nf_conntrack_tcp_loose = 1
		"on_full":     "early-drop", // early_drop, else drop the new packet
		"capacity":    "262144",     // 262144 above 4 GiB
		"nat.enabled": "false",
		// Not in the notes: Linux nf_conntrack-sysctl.rst and nf_conntrack_proto_tcp.c.
		"timeouts.tcp.unacknowledged": "300s", "timeouts.tcp.max_retrans": "300s", "tcp_max_retrans": "3",
		"invalid": "accept", "decrement_ttl": "true",
	},
	// "kube-proxy sets tcp established 86400, close_wait 3600"
	"kube-proxy": {
		"timeouts.tcp.established": "86400s", "timeouts.tcp.close_wait": "3600s",
		"timeouts.tcp.syn_sent": "120s", "timeouts.udp": "30s", "orphan": "pickup",
	},
	// "Docker swarm / IPVS: 900 s idle"
	"docker-ipvs": {"timeouts.tcp.established": "900s"},
	// AWS NAT Gateway: 350 s fixed; RST to the inside host that keeps sending
	"aws-nat-gateway": {
		"timeouts.tcp.established": "350s", "orphan": "reset", "reset_on_expire": "false",
		"nat.enabled": "true", "nat.outside": "[198.19.0.1, fd00:19::1]",
	},
	// AWS NLB: 350 s, RST to client or target sending after expiry; keepalive probes reset the timer; UDP 120 s
	"aws-nlb": {
		"timeouts.tcp.established": "350s", "orphan": "reset", "refresh": "any",
		"timeouts.udp": "120s", "timeouts.udp_stream": "120s", "nat.enabled": "false",
	},
	// AWS ALB: 60 s; closed at expiry; keepalive does NOT reset it, >= 1 byte of data needed
	"aws-alb": {"timeouts.tcp.established": "60s", "refresh": "data", "reset_on_expire": "true"},
	// AWS GWLB: 350 s; optional RST to sender (default false)
	"aws-gwlb":       {"timeouts.tcp.established": "350s", "orphan": "drop", "reset_on_expire": "false"},
	"aws-gwlb-reset": {"timeouts.tcp.established": "350s", "orphan": "reset", "reset_on_expire": "false"},
	// Azure LB: 4 min; silent drop; with enableTcpReset RST to BOTH ends at the moment of timeout
	"azure-lb":           {"timeouts.tcp.established": "240s", "orphan": "drop", "reset_on_expire": "false"},
	"azure-lb-tcp-reset": {"timeouts.tcp.established": "240s", "reset_on_expire": "true"},
	// Azure NAT Gateway: 4 min; silent drop, RST when traffic later hits the dead flow; UDP 4 min fixed
	"azure-nat-gateway": {
		"timeouts.tcp.established": "240s", "orphan": "reset", "reset_on_expire": "false",
		"timeouts.udp": "240s", "timeouts.udp_stream": "240s", "nat.enabled": "true",
	},
	// Google Cloud NAT: established 1200, transitory 30, TIME_WAIT 30 for new gateways from 2026; UDP 30; ICMP 30; silent drop
	"gcp-cloud-nat": {
		"timeouts.tcp.established": "1200s", "timeouts.tcp.syn_sent": "30s", "timeouts.tcp.syn_recv": "30s",
		"timeouts.tcp.fin_wait": "30s", "timeouts.tcp.close_wait": "30s", "timeouts.tcp.last_ack": "30s",
		"timeouts.tcp.time_wait": "30s", "timeouts.udp": "30s", "timeouts.udp_stream": "30s", "timeouts.icmp": "30s",
		"orphan": "drop", "nat.enabled": "true",
	},
	// Cisco ASA: conn 1:00:00, half-closed 0:10:00, udp 0:02:00, icmp 0:00:02, embryonic 0:00:30; silent
	"cisco-asa": {
		"timeouts.tcp.established": "3600s", "timeouts.tcp.fin_wait": "600s", "timeouts.tcp.close_wait": "600s",
		"timeouts.tcp.last_ack": "600s", "timeouts.udp": "120s", "timeouts.udp_stream": "120s", "timeouts.icmp": "2s",
		"timeouts.tcp.syn_sent": "30s", "timeouts.tcp.syn_recv": "30s", "orphan": "drop",
	},
	// Palo Alto: TCP 3600, default 30; half-closed 120, time-wait 15 (secondary); silent drop
	"palo-alto": {
		"timeouts.tcp.established": "3600s", "timeouts.generic": "30s", "timeouts.tcp.fin_wait": "120s",
		"timeouts.tcp.time_wait": "15s", "orphan": "drop",
	},
	// FortiGate: session-ttl 3600; silent drop
	"fortigate": {"timeouts.tcp.established": "3600s", "orphan": "drop"},
	// Juniper SRX: TCP 1800, UDP 60, tcp-initial 20; silent drop
	"juniper-srx": {
		"timeouts.tcp.established": "1800s", "timeouts.udp": "60s", "timeouts.udp_stream": "60s",
		"timeouts.tcp.syn_sent": "20s", "orphan": "drop",
	},
	// pf: tcp first 120, opening 30, established 86400, closing 900, finwait 45, closed 90;
	// udp first 60, multiple 60; icmp 20; 100000 states; silent drop
	"pf": {
		"timeouts.tcp.syn_sent": "120s", "timeouts.tcp.syn_recv": "30s", "timeouts.tcp.established": "86400s",
		"timeouts.tcp.fin_wait": "900s", "timeouts.tcp.time_wait": "45s", "timeouts.tcp.close": "90s",
		"timeouts.udp": "60s", "timeouts.udp_stream": "60s", "timeouts.icmp": "20s", "capacity": "100000",
		"orphan": "drop",
	},
	// Home NAT routers: UDP bindings as short as 30 s; LRU-like eviction when the table is small
	"home-router": {"timeouts.udp": "30s", "timeouts.udp_stream": "30s", "on_full": "evict-lru", "nat.enabled": "true"},
	// RFC 5382 REQ-5 (2 h 4 min, 4 min), RFC 4787 REQ-5 (2 min), RFC 5508 REQ-2 (60 s), REQ-1 EIM
	"rfc-minimum": {
		"timeouts.tcp.established": "7440s", "timeouts.tcp.syn_sent": "240s", "timeouts.tcp.syn_recv": "240s",
		"timeouts.tcp.fin_wait": "240s", "timeouts.tcp.close_wait": "240s", "timeouts.tcp.last_ack": "240s",
		"timeouts.tcp.time_wait": "240s", "timeouts.udp": "120s", "timeouts.udp_stream": "120s",
		"timeouts.icmp": "60s", "nat.enabled": "true", "nat.mapping": "endpoint-independent",
	},
}

// readKey reads one key of a policy from its typed fields.
func readKey(t *testing.T, p Policy, key string) string {
	t.Helper()
	d := func(x Duration) string { return formatSeconds(time.Duration(x)) }
	tt := p.Timeouts.TCP
	switch key {
	case "timeouts.tcp.syn_sent":
		return d(tt.SynSent)
	case "timeouts.tcp.syn_recv":
		return d(tt.SynRecv)
	case "timeouts.tcp.established":
		return d(tt.Established)
	case "timeouts.tcp.fin_wait":
		return d(tt.FinWait)
	case "timeouts.tcp.close_wait":
		return d(tt.CloseWait)
	case "timeouts.tcp.last_ack":
		return d(tt.LastAck)
	case "timeouts.tcp.time_wait":
		return d(tt.TimeWait)
	case "timeouts.tcp.close":
		return d(tt.Close)
	case "timeouts.tcp.unacknowledged":
		return d(tt.Unacknowledged)
	case "timeouts.tcp.max_retrans":
		return d(tt.MaxRetrans)
	case "tcp_max_retrans":
		return itoa(p.TCPMaxRetrans)
	case "invalid":
		return p.Invalid.String()
	case "decrement_ttl":
		return boolString(p.DecrementTTL)
	case "timeouts.udp":
		return d(p.Timeouts.UDP)
	case "timeouts.udp_stream":
		return d(p.Timeouts.UDPStream)
	case "timeouts.icmp":
		return d(p.Timeouts.ICMP)
	case "timeouts.generic":
		return d(p.Timeouts.Generic)
	case "orphan":
		return p.Orphan.String()
	case "on_full":
		return conntrack.OnFull(p.OnFull).String()
	case "refresh":
		return conntrack.Refresh(p.Refresh).String()
	case "capacity":
		return itoa(p.Capacity)
	case "reset_on_expire":
		return boolString(p.ResetOnExpire)
	case "nat.enabled":
		return boolString(p.NAT.Enabled)
	case "nat.mapping":
		return p.NAT.Mapping.String()
	case "nat.outside":
		parts := make([]string, len(p.NAT.Outside))
		for i, a := range p.NAT.Outside {
			parts[i] = a.String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	t.Fatalf("the test does not read key %q", key)
	return ""
}

func formatSeconds(d time.Duration) string { return itoa(int(d/time.Second)) + "s" }

func itoa(n int) string { return strconv.Itoa(n) }

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestProfilesMatchNotes(t *testing.T) {
	for name, want := range notes {
		t.Run(name, func(t *testing.T) {
			p, err := ProfilePolicy(name)
			if err != nil {
				t.Fatal(err)
			}
			for key, v := range want {
				if got := readKey(t, p, key); got != v {
					t.Errorf("%s = %s; middlebox-timeouts.md says %s", key, got, v)
				}
			}
		})
	}
	for _, pr := range Profiles() {
		if _, ok := notes[pr.Name]; !ok {
			t.Errorf("profile %s has no row in the transcribed notes", pr.Name)
		}
	}
}

func TestProfilesRequired(t *testing.T) {
	for _, name := range []string{"linux-conntrack", "kube-proxy", "docker-ipvs", "aws-nat-gateway", "aws-nlb", "aws-alb",
		"aws-gwlb-reset", "azure-lb", "azure-lb-tcp-reset", "azure-nat-gateway", "gcp-cloud-nat", "cisco-asa",
		"palo-alto", "fortigate", "juniper-srx", "pf", "home-router", "rfc-minimum"} {
		if _, err := LookupProfile(name); err != nil {
			t.Errorf("missing profile %s", name)
		}
	}
}

func TestProfilesWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, pr := range Profiles() {
		t.Run(pr.Name, func(t *testing.T) {
			if seen[pr.Name] {
				t.Fatal("duplicate name")
			}
			seen[pr.Name] = true
			if pr.Description == "" || strings.Contains(pr.Description, "\n") {
				t.Errorf("description must be one line: %q", pr.Description)
			}
			if pr.Reflects == "" || !containsYear(pr.Reflects) {
				t.Errorf("reflects must name a document and a year: %q", pr.Reflects)
			}
			if pr.Unconfirmed() && !strings.Contains(pr.Description, "unconfirmed") && !strings.Contains(pr.Description, "illustrative") {
				t.Errorf("built on an unconfirmed value, but the description does not say so: %q", pr.Description)
			}
			p := pr.Policy() // panics on an invalid setting
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := NewEngine(p); err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			for _, s := range pr.Settings {
				if s.Source == "" {
					t.Errorf("%s has no source", s.Key)
				}
				if keys[s.Key] {
					t.Errorf("%s set twice", s.Key)
				}
				keys[s.Key] = true
			}
			for _, v := range pr.Values() {
				if v.Source == "" {
					t.Errorf("value %s has no source", v.Key)
				}
			}
			if p.NAT.Enabled {
				want := ProfileNATOutside()
				if len(p.NAT.Outside) != 2 || p.NAT.Outside[0] != want[0] || p.NAT.Outside[1] != want[1] {
					t.Errorf("NAT outside %v, want the lab's %v", p.NAT.Outside, want)
				}
			}
		})
	}
}

func containsYear(s string) bool {
	for i := 0; i+4 <= len(s); i++ {
		if (s[i] == '1' || s[i] == '2') && (s[i+1] == '9' || s[i+1] == '0') && isDigit(s[i+2]) && isDigit(s[i+3]) {
			return true
		}
	}
	return false
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func TestLookupProfileUnknown(t *testing.T) {
	_, err := LookupProfile("aws-nat-gatway")
	var ue *UnknownProfileError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `unknown profile "aws-nat-gatway"`) ||
		!strings.Contains(err.Error(), "aws-nat-gateway") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("got %v", err)
	}
}

func TestLoadFrom(t *testing.T) {
	p, err := Load(strings.NewReader("from: aws-nat-gateway\ntimeouts:\n  tcp:\n    established: 10s\norphan: drop\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeouts.TCP.Established != Duration(10*time.Second) || p.Orphan != OrphanDrop {
		t.Fatalf("overrides not applied: %+v", p)
	}
	if !p.NAT.Enabled || len(p.NAT.Outside) != 2 {
		t.Fatalf("the profile's NAT is lost: %+v", p.NAT)
	}
	// Key order does not matter: from is applied first.
	q, err := Load(strings.NewReader("orphan: drop\nfrom: aws-nat-gateway\n"))
	if err != nil || q.Orphan != OrphanDrop || !q.NAT.Enabled {
		t.Fatalf("%v %+v", err, q)
	}

	cases := []struct{ name, yaml, want string }{
		{"unknown", "# comment\nfrom: aws-nat-gatway\n", `line 2: from: unknown profile "aws-nat-gatway"; known profiles: `},
		{"not a name", "from: [a, b]\n", "line 1: from: expected a profile name"},
		{"bad override", "from: pf\ntimeouts:\n  tcp:\n    establised: 5s\n", `line 4: unknown key "establised"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	_, err = Load(strings.NewReader("from: nope\n"))
	if err == nil || !strings.Contains(err.Error(), "linux-conntrack") {
		t.Fatalf("the error must list the known profiles: %v", err)
	}
	_, err = Load(strings.NewReader("timeout: 5s\n"))
	if err == nil || !strings.Contains(err.Error(), "from") {
		t.Fatalf("the known keys must include from: %v", err)
	}
}

func TestScale(t *testing.T) {
	p, _ := ProfilePolicy("aws-nat-gateway")
	s, err := p.Scale(0.01)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(s.Timeouts.TCP.Established); got != 3500*time.Millisecond {
		t.Fatalf("350s x 0.01 = %v", got)
	}
	if got := time.Duration(s.Timeouts.TCP.TimeWait); got != 1200*time.Millisecond {
		t.Fatalf("time_wait %v", got)
	}
	if s.Capacity != p.Capacity || s.Orphan != p.Orphan || !s.NAT.Enabled {
		t.Fatal("Scale changed something other than timeouts")
	}
	if p.Timeouts.TCP.Established != Duration(350*time.Second) {
		t.Fatal("Scale changed its receiver")
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tiny, _ := p.Scale(0.000001)
	if time.Duration(tiny.Timeouts.TCP.Close) != MinScaledTimeout {
		t.Fatalf("close scaled to %v, want the floor", tiny.Timeouts.TCP.Close)
	}
	for _, f := range []float64{0, -1, 1e9} {
		if _, err := p.Scale(f); err == nil {
			t.Errorf("scale %v accepted", f)
		}
	}
	if got := FormatScaled(350*time.Second, 0.01); got != "3.5s (real 350s)" {
		t.Fatalf("FormatScaled = %q", got)
	}
	if got := FormatScaled(350*time.Second, 1); got != "350s" {
		t.Fatalf("FormatScaled = %q", got)
	}
	if got := FormatUnscaled(3500*time.Millisecond, 0.01); got != "3.5s (real 350s)" {
		t.Fatalf("FormatUnscaled = %q", got)
	}
}

func TestCheck(t *testing.T) {
	rfcMin, _ := ProfilePolicy("rfc-minimum")
	c := Check(rfcMin)
	for _, v := range c.Violations {
		if v.Level == "MUST" {
			t.Errorf("rfc-minimum breaks %s", v)
		}
	}
	if len(c.Checked) < 10 || !c.NAT {
		t.Fatalf("checked %d requirements", len(c.Checked))
	}

	aws, _ := ProfilePolicy("aws-nat-gateway")
	got := map[string]string{}
	for _, v := range Check(aws).Violations {
		got[v.RFC+" "+v.ID+" "+v.Level] += v.Detail + ";"
		if strings.Contains(v.String(), "\n") {
			t.Errorf("not one line: %q", v.String())
		}
	}
	for _, want := range []string{"RFC 5382 REQ-5 MUST", "RFC 5382 REQ-4 MUST", "RFC 4787 REQ-5 MUST", "RFC 5508 REQ-2 MUST"} {
		if _, ok := got[want]; !ok {
			t.Errorf("aws-nat-gateway should break %s; got %v", want, got)
		}
	}
	if !strings.Contains(got["RFC 5382 REQ-5 MUST"], "timeouts.tcp.established 350s") {
		t.Errorf("REQ-5 detail %q", got["RFC 5382 REQ-5 MUST"])
	}
	if _, ok := got["RFC 5382 REQ-1 MUST"]; ok {
		t.Error("endpoint-independent mapping reported as a break")
	}
	sym := aws
	sym.NAT.Mapping = AddressAndPortDependent
	n := 0
	for _, v := range Check(sym).Violations {
		if v.ID == "REQ-1" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("a symmetric NAT breaks RFC 5382 REQ-1 and RFC 4787 REQ-1, got %d", n)
	}
	// A firewall without NAT is not held to the mapping requirements.
	fw, _ := ProfilePolicy("aws-nlb")
	for _, r := range Check(fw).Checked {
		if r.NATOnly {
			t.Errorf("checked %s %s on a policy without NAT", r.RFC, r.ID)
		}
	}
}
