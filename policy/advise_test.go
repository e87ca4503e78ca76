package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKeepaliveFor(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		t    time.Duration
		want Keepalive
	}{
		{350 * s, Keepalive{175 * s, 43 * s, 3}},
		{60 * s, Keepalive{30 * s, 7 * s, 3}},
		{240 * s, Keepalive{120 * s, 30 * s, 3}},
		{1200 * s, Keepalive{600 * s, 75 * s, 3}},
		{432000 * s, Keepalive{2 * time.Hour, 75 * s, 3}},
		// Short lab timeouts: whole seconds, never an interval of 0 (issue 17).
		{8 * s, Keepalive{4 * s, 1 * s, 3}},
		{6 * s, Keepalive{3 * s, 1 * s, 2}},
		{5 * s, Keepalive{2 * s, 1 * s, 2}},
		{4 * s, Keepalive{2 * s, 1 * s, 1}},
		{3500 * time.Millisecond, Keepalive{1 * s, 1 * s, 1}},
		{3 * s, Keepalive{1 * s, 1 * s, 1}},
	} {
		k, err := KeepaliveFor(tc.t)
		if err != nil || k != tc.want {
			t.Errorf("T=%v: %+v %v; want %+v", tc.t, k, err, tc.want)
		}
	}
	for _, short := range []time.Duration{2999 * time.Millisecond, 2 * s, 500 * time.Millisecond, 0} {
		if k, err := KeepaliveFor(short); err == nil || !strings.Contains(err.Error(), "too short") {
			t.Errorf("T=%v: %+v %v; want a too-short error", short, k, err)
		}
	}
}

// TestKeepaliveForMargin checks the margin rule for every timeout from 3 s to 3 h: whole
// seconds the kernel accepts, and idle + interval x count at least one interval below T.
func TestKeepaliveForMargin(t *testing.T) {
	for d := 3 * time.Second; d <= 3*time.Hour; d += 250 * time.Millisecond {
		if d > 10*time.Minute {
			d += 7 * time.Second
		}
		k, err := KeepaliveFor(d)
		if err != nil {
			t.Fatalf("T=%v: %v", d, err)
		}
		switch {
		case k.Idle < time.Second || k.Interval < time.Second || k.Count < 1 || k.Count > 3:
			t.Fatalf("T=%v: %+v has a value the kernel rejects", d, k)
		case k.Idle%time.Second != 0 || k.Interval%time.Second != 0:
			t.Fatalf("T=%v: %+v is not whole seconds", d, k)
		case k.DeadAfter()+k.Interval > d:
			t.Fatalf("T=%v: %+v: idle + interval x count = %v, not an interval below T", d, k, k.DeadAfter())
		case k.Interval > 75*time.Second || k.Idle > 2*time.Hour:
			t.Fatalf("T=%v: %+v above Linux's interval or the 2 h idle", d, k)
		case d >= 8*time.Second && k.Count != 3:
			t.Fatalf("T=%v: %+v: 3 probes fit", d, k)
		}
	}
}

func withTimeout(t *testing.T, base Policy, est string, sets ...string) Policy {
	t.Helper()
	p := base
	if err := p.Set("timeouts.tcp.established", est); err != nil {
		t.Fatal(err)
	}
	for _, kv := range sets {
		k, v, _ := strings.Cut(kv, "=")
		if err := p.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestAdviseOneComputation: the text and the JSON render the same Advice. Every item's
// lines appear verbatim in the text, the JSON carries the same config, and the values in
// them are the Keepalive's (the interval-0 bug printed 0 in the text and 1 in the JSON).
func TestAdviseOneComputation(t *testing.T) {
	for _, est := range []string{"3s", "4s", "5s", "6s", "8s", "60s", "350s", "2h"} {
		for _, orphan := range []string{"reset", "drop"} {
			t.Run(est+"-"+orphan, func(t *testing.T) {
				a := Advise(withTimeout(t, Default(), est, "orphan="+orphan), 1)
				if a.TooShort != "" || len(a.Items) == 0 {
					t.Fatalf("no advice: %q", a.TooShort)
				}
				text := a.String()
				b, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				var j struct {
					Settings []AdviceItem `json:"settings"`
				}
				var raw map[string]json.RawMessage
				json.Unmarshal(b, &raw)
				var ka map[string]int64
				if err := json.Unmarshal(raw["keepalive"], &ka); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(b, &j); err != nil {
					t.Fatal(err)
				}
				k := a.Keepalive
				if ka["idle_s"] != secs(k.Idle) || ka["interval_s"] != secs(k.Interval) || ka["count"] != int64(k.Count) ||
					ka["user_timeout_ms"] != k.UserTimeout().Milliseconds() {
					t.Fatalf("JSON keepalive %v, advice %+v", ka, k)
				}
				if !strings.Contains(text, "keepalive: "+k.String()) {
					t.Errorf("text lacks %q", k.String())
				}
				if len(j.Settings) != len(a.Items) {
					t.Fatalf("JSON has %d settings, advice %d", len(j.Settings), len(a.Items))
				}
				for i, it := range a.Items {
					if j.Settings[i].Config != it.Config || j.Settings[i].ID != it.ID || j.Settings[i].Works != it.Works {
						t.Errorf("%s: JSON %+v differs from %+v", it.ID, j.Settings[i], it)
					}
					for _, line := range strings.Split(it.Config, "\n") {
						if line != "" && !strings.Contains(text, line) {
							t.Errorf("%s: text lacks %q", it.ID, line)
						}
					}
				}
				zero := regexp.MustCompile(`(=|= |: |\s)0(\D|$)`)
				for _, it := range a.Items {
					if m := zero.FindString(it.Config); m != "" {
						t.Errorf("%s prints a 0 (%q):\n%s", it.ID, m, it.Config)
					}
				}
				I, V, C, U := secs(k.Idle), secs(k.Interval), k.Count, k.UserTimeout().Milliseconds()
				for id, want := range map[string][]string{
					"linux-sysctl":      {fmt.Sprintf("tcp_keepalive_time = %d\n", I), fmt.Sprintf("tcp_keepalive_intvl = %d\n", V), fmt.Sprintf("tcp_keepalive_probes = %d", C)},
					"libpq":             {fmt.Sprintf("keepalives_idle=%d keepalives_interval=%d keepalives_count=%d tcp_user_timeout=%d", I, V, C, U)},
					"psycopg":           {fmt.Sprintf("keepalives_idle=%d, keepalives_interval=%d, keepalives_count=%d, tcp_user_timeout=%d", I, V, C, U)},
					"postgresql-server": {fmt.Sprintf("tcp_keepalives_idle = %d\ntcp_keepalives_interval = %d\ntcp_keepalives_count = %d\ntcp_user_timeout = %d", I, V, C, U)},
					"go-dialer":         {fmt.Sprintf("Idle: %d * time.Second, Interval: %d * time.Second, Count: %d}", I, V, C), fmt.Sprintf("TCP_USER_TIMEOUT, %d)", U)},
					"redis-py":          {fmt.Sprintf("socket.TCP_KEEPIDLE: %d, socket.TCP_KEEPINTVL: %d, socket.TCP_KEEPCNT: %d, socket.TCP_USER_TIMEOUT: %d}", I, V, C, U)},
					"python-requests":   {fmt.Sprintf("TCP_KEEPIDLE, %d)", I), fmt.Sprintf("TCP_KEEPINTVL, %d)", V), fmt.Sprintf("TCP_KEEPCNT, %d)", C), fmt.Sprintf("TCP_USER_TIMEOUT, %d)", U)},
					"ssh-client":        {fmt.Sprintf("ServerAliveInterval %d\nServerAliveCountMax %d", I, C)},
					"sshd":              {fmt.Sprintf("ClientAliveInterval %d\nClientAliveCountMax %d", halfBelow(a.Timeout, k), C)},
					"curl":              {fmt.Sprintf("--keepalive-time %d", halfBelow(a.Timeout, k))},
					"redis-server":      {fmt.Sprintf("tcp-keepalive %d", I)},
					"nginx-server":      {fmt.Sprintf("so_keepalive=%d:%d:%d;", I, V, C)},
					"nginx-upstream":    {fmt.Sprintf("keepalive_timeout %ds;", I)},
				} {
					it, ok := a.Item(id)
					if !ok {
						t.Fatalf("no item %s", id)
					}
					for _, w := range want {
						if !strings.Contains(it.Config, w) {
							t.Errorf("%s lacks %q:\n%s", id, w, it.Config)
						}
					}
				}
			})
		}
	}
}

// TestAdviseIssue17Interval0 is the report: a 6 s box printed tcp_keepalive_intvl = 0.
func TestAdviseIssue17Interval0(t *testing.T) {
	for _, est := range []string{"3s", "4s", "5s", "6s"} {
		text := Advise(withTimeout(t, Default(), est), 1).String()
		for _, bad := range []string{"tcp_keepalive_intvl = 0", "keepalives_interval=0", "keepalives_idle=0", "ServerAliveInterval 0", "tcp-keepalive 0", "--keepalive-time 0"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s: advice prints %q", est, bad)
			}
		}
	}
}

// TestAdviseKnobRules: the tools whose own rules differ from the kernel's stay within
// the margin: Redis probes every N/3 after N, curl uses N for idle and interval.
func TestAdviseKnobRules(t *testing.T) {
	for d := 3 * time.Second; d <= 400*time.Second; d += 500 * time.Millisecond {
		k, err := KeepaliveFor(d)
		if err != nil {
			t.Fatal(err)
		}
		n := halfBelow(d, k)
		if n < 1 || time.Duration(2*n)*time.Second >= d {
			t.Fatalf("T=%v: curl --keepalive-time / ClientAliveInterval %d: twice it is not below the timeout", d, n)
		}
		redisN := k.Idle
		if redisN+max(redisN/3, time.Second) >= d {
			t.Fatalf("T=%v: tcp-keepalive %v: Redis's second probe comes after the timeout", d, redisN)
		}
	}
}

func TestAdviseTooShort(t *testing.T) {
	a := Advise(withTimeout(t, Default(), "2s"), 1)
	if a.TooShort == "" || len(a.Items) != 0 || !strings.Contains(a.String(), "no TCP keepalive setting fits") {
		t.Fatalf("2s: %q, %d items\n%s", a.TooShort, len(a.Items), a)
	}
	b, _ := json.Marshal(a)
	if !strings.Contains(string(b), `"keepalive":null`) || !strings.Contains(string(b), `"settings":[]`) {
		t.Errorf("JSON of a too-short advice: %s", b)
	}
	nat, _ := ProfilePolicy("aws-nat-gateway")
	scaled := Advise(nat, 0.005) // 1.75 s
	if scaled.TooShort == "" || !strings.Contains(scaled.TooShort, "--time-scale") {
		t.Errorf("scale 0.005: %q", scaled.TooShort)
	}
}

func TestAdvise(t *testing.T) {
	alb, _ := ProfilePolicy("aws-alb")
	a := Advise(alb, 1)
	if a.ProbesCount || len(a.Warnings) == 0 || !strings.Contains(a.Warnings[0], "application data") {
		t.Fatalf("aws-alb needs a warning about application data: %+v", a.Warnings)
	}
	for id, want := range map[string]bool{"linux-sysctl": false, "go-dialer": false, "libpq": false, "redis-server": false, "redis-py": false,
		"curl": false, "nginx-server": false, "ssh-client": true, "sshd": true, "nginx-upstream": true, "hikaricp": true, "jedis": true,
		"go-http-client": true, "go-database-sql": true, "grpc-go-client": true, "grpc-go-server": true} {
		it, ok := a.Item(id)
		if !ok || it.Works != want {
			t.Errorf("aws-alb: %s works=%v (present %v), want %v", id, it.Works, ok, want)
		}
	}
	nat, _ := ProfilePolicy("aws-nat-gateway")
	a = Advise(nat, 1)
	text := a.String()
	for _, want := range []string{"net.ipv4.tcp_keepalive_time = 175", "net.ipv4.tcp_keepalive_intvl = 43",
		"net.ipv4.tcp_keepalive_probes = 3", "Idle: 175 * time.Second", "keepalives_idle=175",
		"ServerAliveInterval 175", "tcp-keepalive 175", "keepalive_timeout 175s", "keepaliveTime=175000",
		"MinTime: 87 * time.Second, PermitWithoutStream: true", "keepalive.ClientParameters{Time: 175 * time.Second"} {
		if !strings.Contains(text, want) {
			t.Errorf("advice lacks %q:\n%s", want, text)
		}
	}
	scaled := Advise(nat, 0.01)
	if scaled.Keepalive != (Keepalive{time.Second, time.Second, 1}) || scaled.RealKeepalive != (Keepalive{175 * time.Second, 43 * time.Second, 3}) ||
		!strings.Contains(scaled.String(), "3.5s (real 350s)") {
		t.Fatalf("scaled advice: %+v real %+v\n%s", scaled.Keepalive, scaled.RealKeepalive, scaled.String())
	}
	azure, _ := ProfilePolicy("azure-lb")
	if !strings.Contains(Advise(azure, 1).Consequence, "dropped silently") {
		t.Error("azure-lb drops silently")
	}
	home, _ := ProfilePolicy("home-router")
	if !strings.Contains(strings.Join(Advise(home, 1).Warnings, "\n"), "evicts") {
		t.Error("home-router evicts: no warning")
	}
}

// TestAdviseBothEnds: every item says where it goes, what it protects and what the other
// end sees; one that works has lines to paste, one that needs another names it.
func TestAdviseBothEnds(t *testing.T) {
	for _, est := range []string{"5s", "350s"} {
		a := Advise(withTimeout(t, Default(), est), 1)
		ids := map[string]bool{}
		sides := map[End]int{}
		for _, it := range a.Items {
			if ids[it.ID] {
				t.Errorf("duplicate id %s", it.ID)
			}
			ids[it.ID] = true
			sides[it.Side]++
			if it.App == "" || it.Tool == "" || it.Where == "" || it.Protects == "" || it.OtherSide == "" {
				t.Errorf("%s: incomplete %+v", it.ID, it)
			}
			if it.Works && it.Config == "" {
				t.Errorf("%s works but has no config", it.ID)
			}
		}
		for _, it := range a.Items {
			for _, n := range it.Needs {
				if !ids[n] {
					t.Errorf("%s needs unknown %s", it.ID, n)
				}
			}
		}
		for _, id := range []string{"libpq", "postgresql-server", "ssh-client", "sshd", "redis-server", "redis-py", "go-redis", "jedis",
			"python-requests", "curl", "nginx-server", "nginx-upstream", "haproxy", "go-http-client", "go-http-server", "go-database-sql",
			"grpc-go-client", "grpc-go-server", "hikaricp", "pgjdbc", "psycopg", "linux-sysctl", "linux-setsockopt"} {
			if !ids[id] {
				t.Errorf("%s: no %s", est, id)
			}
		}
		if sides[EndClient] == 0 || sides[EndServer] == 0 {
			t.Errorf("sides %v", sides)
		}
	}
	// gRPC: the client's Time has a 10 s floor; the server side is always named with it.
	short := Advise(withTimeout(t, Default(), "8s"), 1)
	if c, _ := short.Item("grpc-go-client"); c.Works || c.Config != "" || !strings.Contains(c.Note, "10s") {
		t.Errorf("grpc client at 8s: %+v", c)
	}
	long := Advise(withTimeout(t, Default(), "60s"), 1)
	c, _ := long.Item("grpc-go-client")
	s, _ := long.Item("grpc-go-server")
	if !c.Works || !strings.Contains(c.Note, "too_many_pings") || len(c.Needs) != 1 || c.Needs[0] != "grpc-go-server" ||
		!strings.Contains(s.Config, "EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}") {
		t.Errorf("grpc at 60s: %+v\n%+v", c, s)
	}
}

// TestAdviseBlackHole: with orphan drop the advice says what the hang costs and names
// TCP_USER_TIMEOUT, with its number, for every client that can set it.
func TestAdviseBlackHole(t *testing.T) {
	a := Advise(withTimeout(t, Default(), "8s", "orphan=drop"), 1)
	u := fmt.Sprint(a.Keepalive.UserTimeout().Milliseconds())
	w := strings.Join(a.Warnings, "\n")
	if !strings.Contains(w, "TCP_USER_TIMEOUT="+u+" ms") || !strings.Contains(w, "924s") || !strings.Contains(a.Consequence, "hangs") {
		t.Errorf("drop: %s\n%s", a.Consequence, w)
	}
	for _, id := range []string{"libpq", "psycopg", "postgresql-server", "redis-py", "python-requests", "go-dialer", "linux-setsockopt"} {
		if it, _ := a.Item(id); !strings.Contains(it.Config, u) {
			t.Errorf("%s does not set TCP_USER_TIMEOUT %s:\n%s", id, u, it.Config)
		}
	}
	r := Advise(withTimeout(t, Default(), "8s", "orphan=reset"), 1)
	if strings.Contains(strings.Join(r.Warnings, "\n"), "black hole") {
		t.Error("orphan reset is no black hole")
	}
}
