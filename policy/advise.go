package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// Keepalive advice: settings that keep an idle TCP connection alive through a box whose
// ESTABLISHED idle timeout is T, with margin, for both ends of the connection and every
// common client and server.
//
// One computation, rendered twice: Advise picks one Keepalive (whole seconds, the unit of
// TCP_KEEPIDLE and TCP_KEEPINTVL and of every library knob built on them) for the timeout
// the settings will run under, writes every tool's lines from it, and both the text and the
// JSON are renderings of that one Advice. Nothing is recomputed when printing.
//
// The margin rule, on the timeout T the settings run under:
//   - idle = T/2 when T <= 60 s, else min(T/2, T - 30 s), at most 2 h (the RFC 1122
//     default: a longer idle never helps), rounded down: to 1 s below 60 s, to 5 s below
//     10 min, to 1 min above;
//   - count = 3 probes, interval = (T - idle) / (count + 1) rounded down to the second, at
//     most 75 s (Linux's default interval); when that is below 1 s, the count drops to 2,
//     then 1, so that no setting is ever 0 (the kernel rejects TCP_KEEPINTVL=0);
//   - so idle + interval x count <= T - interval < T: a lost probe is retried before the
//     box forgets the flow, and a dead path is declared dead before the box would have
//     forgotten it. TCP_USER_TIMEOUT = idle + interval x count pairs with it, so that it
//     never ends a connection keepalive still considers alive.
//
// A T for which no whole-second setting fits (below 3 s) gets no settings but a sentence
// saying so.
const (
	adviceCount    = 3
	adviceMaxIdle  = 2 * time.Hour    // RFC 1122 4.2.3.6: keepalive idle defaults to no less than 2 h
	adviceMaxIntvl = 75 * time.Second // Linux net.ipv4.tcp_keepalive_intvl default
	adviceSlack    = 30 * time.Second
	// linuxRetries2 is how long Linux retransmits unacknowledged data before giving up
	// with tcp_retries2=15 (its default) and the minimum RTO of 200 ms: about 924.6 s.
	linuxRetries2 = 924 * time.Second
	// linuxDefaultIdle is net.ipv4.tcp_keepalive_time's default, 7200 s.
	linuxDefaultIdle = 7200 * time.Second
	// minAdviceTimeout is the shortest T with a whole-second setting below it: idle 1 s,
	// interval 1 s, 1 probe, 1 s to spare.
	minAdviceTimeout = 3 * time.Second
)

// AdviceRule explains the margin rule in one sentence, for printing.
const AdviceRule = "idle = T/2 (min(T/2, T-30s) above 60s), at most 2h, rounded down to whole seconds; " +
	"3 probes every (T-idle)/4 (at most 75s; fewer probes when that is below 1s), so that idle + interval x count < T; " +
	"TCP_USER_TIMEOUT = idle + interval x count"

// Keepalive is one set of TCP keepalive settings in whole seconds, as the kernel's
// TCP_KEEPIDLE and TCP_KEEPINTVL and every library knob built on them take them.
type Keepalive struct {
	Idle     time.Duration // silence before the first probe (TCP_KEEPIDLE), whole seconds, at least 1 s
	Interval time.Duration // between unanswered probes (TCP_KEEPINTVL), whole seconds, at least 1 s
	Count    int           // unanswered probes before the connection is dead (TCP_KEEPCNT), 1 to 3
}

// DeadAfter is how long a dead path takes to be noticed: Idle + Interval x Count.
func (k Keepalive) DeadAfter() time.Duration { return k.Idle + k.Interval*time.Duration(k.Count) }

// UserTimeout is the TCP_USER_TIMEOUT that goes with k: DeadAfter, so that unacknowledged
// data fails as soon as keepalive would declare the path dead, and never earlier.
func (k Keepalive) UserTimeout() time.Duration { return k.DeadAfter() }

// MarshalJSON writes {"idle_s": 175, "interval_s": 43, "count": 3, "user_timeout_ms": 304000}.
func (k Keepalive) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Idle        int64 `json:"idle_s"`
		Interval    int64 `json:"interval_s"`
		Count       int   `json:"count"`
		UserTimeout int64 `json:"user_timeout_ms"`
	}{secs(k.Idle), secs(k.Interval), k.Count, k.UserTimeout().Milliseconds()})
}

func (k Keepalive) String() string {
	probes := "probes"
	if k.Count == 1 {
		probes = "probe"
	}
	return fmt.Sprintf("idle %s, interval %s, %d %s (dead after %s; TCP_USER_TIMEOUT %d ms)",
		formatDuration(k.Idle), formatDuration(k.Interval), k.Count, probes, formatDuration(k.DeadAfter()), k.UserTimeout().Milliseconds())
}

// KeepaliveFor applies the margin rule to an idle timeout t. It fails, with a sentence
// saying why, when t is too short for any whole-second setting (below 3 s).
func KeepaliveFor(t time.Duration) (Keepalive, error) {
	if t < minAdviceTimeout {
		return Keepalive{}, fmt.Errorf("an idle timeout of %s is too short for TCP keepalive: its settings take whole seconds "+
			"(idle and interval at least 1s) and idle + interval x count must stay an interval below the timeout, which needs %s or more",
			formatDuration(t), formatDuration(minAdviceTimeout))
	}
	idle := t / 2
	if t > 2*adviceSlack {
		idle = min(t/2, t-adviceSlack)
	}
	idle = max(roundDown(min(idle, adviceMaxIdle)), time.Second)
	for count := adviceCount; count >= 1; count-- {
		intvl := min(((t - idle) / time.Duration(count+1)).Truncate(time.Second), adviceMaxIntvl)
		if intvl >= time.Second {
			return Keepalive{Idle: idle, Interval: intvl, Count: count}, nil
		}
	}
	// Unreachable for t >= 3 s: idle <= t/2 leaves at least 2 s for one probe.
	return Keepalive{}, fmt.Errorf("no whole-second keepalive fits below %s", formatDuration(t))
}

// roundDown rounds an idle time down to a value people write: whole seconds below
// 1 min, 5 s below 10 min, whole minutes above.
func roundDown(d time.Duration) time.Duration {
	switch {
	case d < time.Minute:
		return d.Truncate(time.Second)
	case d < 10*time.Minute:
		return d.Truncate(5 * time.Second)
	}
	return d.Truncate(time.Minute)
}

// heartbeatFor is how often an application that sends its own datagrams or messages
// should send through a box with timeout t: half of it, rounded down (milliseconds
// below 1 s, at least 1 ms).
func heartbeatFor(t time.Duration) time.Duration {
	if t < 2*time.Second {
		return max((t / 2).Truncate(time.Millisecond), time.Millisecond)
	}
	return roundDown(t / 2)
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// Advice is the keepalive advice for one policy, for the timeout its settings run under.
type Advice struct {
	// Source says what the policy came from ("profile aws-nat-gateway", "lab pool"), set
	// by the caller; Profile is the built-in profile's name, if any.
	Source  string
	Profile string
	// Scale is the time scale of the lab run the settings are for (1: none). Timeout is
	// the ESTABLISHED idle timeout the settings run under (scaled), RealTimeout the
	// unscaled one; they are equal when Scale is 1.
	Scale       float64
	Timeout     time.Duration
	RealTimeout time.Duration
	// Keepalive is the one set of settings every item below is written from; zero when
	// TooShort says why no setting fits. RealKeepalive is the same rule at RealTimeout.
	Keepalive     Keepalive
	RealKeepalive Keepalive
	TooShort      string
	Rule          string
	// ProbesCount reports whether TCP keepalive probes (and the ACKs answering them)
	// refresh the box; InsideOnly whether only packets from the inside (client) do.
	ProbesCount bool
	InsideOnly  bool
	// Consequence is what happens to a connection idle past the timeout.
	Consequence string
	Items       []AdviceItem
	Warnings    []string
	// UDPTimeout is the smaller UDP timeout (scaled); UDP how often a UDP flow must
	// send to keep its entry.
	UDP        time.Duration
	UDPTimeout time.Duration
}

// End is the end of the connection a setting is made on.
type End uint8

const (
	// EndClient: the end that opened the connection (inside the box, in the lab).
	EndClient End = iota
	// EndServer: the end that accepted it.
	EndServer
	// EndEither: a setting for whichever end runs it (sysctls, socket options, proxies).
	EndEither
)

var endNames = []string{"client", "server", "either"}

func (e End) String() string { return enumName(endNames, int(e)) }

// MarshalText writes the end's name.
func (e End) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText reads "client", "server" or "either".
func (e *End) UnmarshalText(b []byte) error {
	i, err := enumParse("side", endNames, string(b))
	*e = End(i)
	return err
}

// AdviceItem is the setting of one tool at one end of the connection.
type AdviceItem struct {
	// ID names the item for programs ("libpq", "redis-py"); stable across releases.
	ID string `json:"id"`
	// App groups items in the text ("PostgreSQL"); Tool names the one this item sets.
	App  string `json:"app"`
	Tool string `json:"tool"`
	Side End    `json:"side"`
	// Where says where Config goes (a file, a function's arguments, a command line).
	Where string `json:"where"`
	// Config is what to paste there, possibly several lines; "" when Works is false
	// because no value the tool accepts fits (never a value the tool rejects).
	Config string `json:"config"`
	// Works is false when this setting cannot keep the connection through this box.
	Works bool `json:"works"`
	// Protects says what the setting keeps alive, from which end; OtherSide what the
	// other end sees and whether it must do anything.
	Protects  string `json:"protects"`
	OtherSide string `json:"other_side"`
	Note      string `json:"note,omitempty"`
	// Needs lists the IDs of other items this one only works with.
	Needs []string `json:"needs,omitempty"`
}

// MarshalJSON writes durations as seconds: {"timeout_s": 350, "keepalive": {"idle_s": 175, ...}, ...}.
func (a Advice) MarshalJSON() ([]byte, error) {
	var ka, realKA *Keepalive
	if a.TooShort == "" {
		ka = &a.Keepalive
	}
	var realTimeout *float64
	if a.Scale != 1 {
		rt := a.RealTimeout.Seconds()
		realTimeout = &rt
		if a.RealKeepalive.Count > 0 {
			realKA = &a.RealKeepalive
		}
	}
	items := a.Items
	if items == nil {
		items = []AdviceItem{}
	}
	return json.Marshal(struct {
		Source        string       `json:"source"`
		Profile       string       `json:"profile,omitempty"`
		Scale         float64      `json:"scale"`
		Timeout       float64      `json:"timeout_s"`
		RealTimeout   *float64     `json:"real_timeout_s,omitempty"`
		Keepalive     *Keepalive   `json:"keepalive"`
		RealKeepalive *Keepalive   `json:"real_keepalive,omitempty"`
		TooShort      string       `json:"too_short,omitempty"`
		Rule          string       `json:"rule"`
		ProbesCount   bool         `json:"probes_count"`
		InsideOnly    bool         `json:"inside_only"`
		Consequence   string       `json:"consequence"`
		Warnings      []string     `json:"warnings"`
		Items         []AdviceItem `json:"settings"`
		UDP           float64      `json:"udp_every_s"`
		UDPTimeout    float64      `json:"udp_timeout_s"`
	}{a.Source, a.Profile, a.Scale, a.Timeout.Seconds(), realTimeout, ka, realKA, a.TooShort, a.Rule, a.ProbesCount,
		a.InsideOnly, a.Consequence, a.Warnings, items, a.UDP.Seconds(), a.UDPTimeout.Seconds()})
}

// Item returns the item with the given ID.
func (a Advice) Item(id string) (AdviceItem, bool) {
	for _, it := range a.Items {
		if it.ID == id {
			return it, true
		}
	}
	return AdviceItem{}, false
}

// Advise computes keepalive settings for a box with policy p, given in real (unscaled)
// durations, for a run at time scale f (1 for none): the settings are for the scaled
// timeout, the real ones are reported alongside.
func Advise(p Policy, f float64) Advice {
	if f <= 0 {
		f = 1
	}
	realT := time.Duration(p.Timeouts.TCP.Established)
	t := ScaleDuration(realT, f)
	refresh := conntrack.Refresh(p.Refresh)
	a := Advice{
		Scale: f, Timeout: t, RealTimeout: realT, Rule: AdviceRule,
		ProbesCount: refresh == conntrack.RefreshAny || refresh == conntrack.RefreshInside,
		InsideOnly:  refresh == conntrack.RefreshInside,
		Warnings:    []string{},
	}
	a.UDPTimeout = ScaleDuration(time.Duration(min(p.Timeouts.UDPStream, p.Timeouts.UDP)), f)
	a.UDP = heartbeatFor(a.UDPTimeout)
	if f != 1 {
		a.RealKeepalive, _ = KeepaliveFor(realT)
	}
	k, err := KeepaliveFor(t)
	if err != nil {
		a.TooShort = err.Error()
		if f != 1 {
			a.TooShort += fmt.Sprintf("; at this time scale the box's %s becomes %s: pick a --time-scale that keeps it at %s or more",
				formatDuration(realT), formatDuration(t), formatDuration(minAdviceTimeout))
		} else {
			a.TooShort += "; only an application heartbeat in milliseconds can keep a connection through it"
		}
	} else {
		a.Keepalive = k
	}
	a.Consequence = consequence(&p, t, k, err == nil)
	if err == nil {
		a.Items = appItems(&a, t, k)
	}
	a.Warnings = warnings(&a, &p, t, k)
	return a
}

func warnings(a *Advice, p *Policy, t time.Duration, k Keepalive) []string {
	w := []string{}
	if !a.ProbesCount {
		w = append(w, fmt.Sprintf("this box ignores TCP keepalive probes (refresh: %s): Linux sysctls, socket options, Go KeepAliveConfig, libpq and PostgreSQL keepalives, "+
			"Redis tcp-keepalive, curl --keepalive-time and nginx so_keepalive cannot keep a connection through it; "+
			"it needs application data more often than every %s (ssh ServerAliveInterval, HikariCP keepaliveTime, Jedis testWhileIdle, gRPC or HTTP/2 PING, WebSocket ping), "+
			"or a pool that closes idle connections first (Go IdleConnTimeout and SetConnMaxIdleTime, go-redis ConnMaxIdleTime, nginx upstream keepalive_timeout)",
			p.Refresh, formatDuration(heartbeatFor(t))))
	}
	if a.InsideOnly {
		w = append(w, "only packets from the inside (client side) refresh this box: a server's keepalive probe counts through the client kernel's answer to it, "+
			"which comes from the inside, so server-side settings work while the client answers; a server's own data does not count")
	}
	if conntrack.OnFull(p.OnFull) == conntrack.EvictLRU {
		w = append(w, fmt.Sprintf("this box evicts the least recently active connection when its table of %d is full: "+
			"keepalive keeps a connection off the bottom of the list only while fewer than %d connections are more recent; no setting protects it from a burst of new ones", p.Capacity, p.Capacity))
	}
	if p.Orphan == OrphanDrop && !p.ResetOnExpire && a.TooShort == "" {
		w = append(w, fmt.Sprintf("this box drops packets of forgotten connections silently (a black hole): the next request on one hangs, nothing is printed, "+
			"until TCP gives up retransmitting after about %s (tcp_retries2=15); TCP_USER_TIMEOUT=%d ms ends that wait after %s: "+
			"it is set below for libpq, psycopg, PostgreSQL, redis-py, requests, Go and raw sockets; curl cannot set it (bound the hang with --max-time or --speed-limit/--speed-time), "+
			"ssh ends it with ServerAliveCountMax, redis-cli never does",
			formatDuration(linuxRetries2), k.UserTimeout().Milliseconds(), formatDuration(k.UserTimeout())))
	}
	if a.RealTimeout >= linuxDefaultIdle+adviceMaxIntvl*10 {
		w = append(w, fmt.Sprintf("this box keeps idle TCP connections for %s: the OS defaults (7200s idle) already fit once SO_KEEPALIVE is on", formatDuration(a.RealTimeout)))
	}
	if a.Scale != 1 {
		real := ""
		if a.RealKeepalive.Count > 0 {
			real = ": at real time, " + a.RealKeepalive.String()
		}
		w = append(w, fmt.Sprintf("the settings are for a lab run at time scale %g, where the box's timeout is %s (real %s)%s",
			a.Scale, formatDuration(t), formatDuration(a.RealTimeout), real))
	}
	return w
}

func consequence(p *Policy, t time.Duration, k Keepalive, haveK bool) string {
	after := "a connection idle for " + formatDuration(t) + " is forgotten: "
	switch {
	case p.ResetOnExpire:
		return after + "the box sends a RST to both ends at that moment; the next read or write fails with ECONNRESET"
	case p.Orphan == OrphanReset:
		return after + "the next packet on it is answered with a RST: ECONNRESET (curl and nginx retry on a new connection and hide it; psql, requests, redis-py and ssh fail)"
	case p.Orphan == OrphanICMP:
		return after + "the next packet on it is answered with ICMP administratively prohibited: EHOSTUNREACH"
	case p.Orphan == OrphanPickup && p.NAT.Enabled:
		return after + "the next outbound packet gets a new outside port; the server answers it with a RST: ECONNRESET"
	case p.Orphan == OrphanPickup:
		return after + "the next packet re-creates the entry mid-stream: the connection survives"
	}
	s := after + fmt.Sprintf("packets on it are dropped silently; the next request hangs with nothing printed until TCP gives up after about %s (tcp_retries2=15)", formatDuration(linuxRetries2))
	if haveK {
		s += fmt.Sprintf(", or after TCP_USER_TIMEOUT (%d ms below)", k.UserTimeout().Milliseconds())
	}
	return s
}

// String renders the advice as text: the same values as the JSON.
func (a Advice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ESTABLISHED idle timeout %s\n", FormatScaled(a.RealTimeout, a.Scale))
	fmt.Fprintf(&b, "  %s\n", a.Consequence)
	if a.TooShort != "" {
		fmt.Fprintf(&b, "no TCP keepalive setting fits: %s\n", a.TooShort)
	} else {
		fmt.Fprintf(&b, "keepalive: %s\n", a.Keepalive)
	}
	fmt.Fprintf(&b, "  margin rule: %s\n", a.Rule)
	for _, w := range a.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	app := ""
	for _, it := range a.Items {
		if it.App != app {
			app = it.App
			fmt.Fprintf(&b, "\n== %s ==\n", app)
		}
		mark := ""
		if !it.Works {
			mark = "  [cannot help here]"
		}
		fmt.Fprintf(&b, "[%s] %s%s\n", it.Side, it.Tool, mark)
		fmt.Fprintf(&b, "  in: %s\n", it.Where)
		if it.Config != "" {
			for _, l := range strings.Split(it.Config, "\n") {
				fmt.Fprintf(&b, "      %s\n", l)
			}
		}
		fmt.Fprintf(&b, "  protects: %s\n", it.Protects)
		fmt.Fprintf(&b, "  other side: %s\n", it.OtherSide)
		if it.Note != "" {
			fmt.Fprintf(&b, "  note: %s\n", it.Note)
		}
		if len(it.Needs) > 0 {
			fmt.Fprintf(&b, "  needs: %s\n", strings.Join(it.Needs, ", "))
		}
	}
	fmt.Fprintf(&b, "\nUDP: send a datagram at least every %s (UDP timeout %s)\n", formatDuration(a.UDP), formatDuration(a.UDPTimeout))
	return b.String()
}
