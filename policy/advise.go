package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/idlegate/idlegate/conntrack"
)

// Keepalive advice: settings that keep an idle TCP connection alive through a box whose
// ESTABLISHED idle timeout is T, with margin.
//
// The margin rule, on real (unscaled) durations:
//   - idle = min(T/2, T - 30 s) (T/2 when T <= 60 s), at most 2 h (the RFC 1122 default:
//     a longer idle never helps), rounded down to 1 s below 60 s, to 5 s below 10 min, to
//     1 min above;
//   - count = 3 probes;
//   - interval = (T - idle) / (count + 1), rounded down to the second, between 1 s and
//     75 s (Linux's default interval);
//
// so that idle + interval × count < T: even if probes are lost, one lands before the box
// forgets the flow, and a dead peer is declared dead before the box would have forgotten
// it (where it matters: a box that drops silently leaves a write hanging otherwise).
const (
	adviceCount     = 3
	adviceMaxIdle   = 2 * time.Hour
	adviceMaxIntvl  = 75 * time.Second
	adviceSlack     = 30 * time.Second
	hikariMinKeep   = 30 * time.Second // HikariCP keepaliveTime minimum
	linuxRetries2   = 924 * time.Second
	linuxDefaultIdl = 7200 * time.Second
)

// AdviceRule explains the margin rule in one sentence, for printing.
const AdviceRule = "idle = min(T/2, T-30s) (T/2 when T <= 60s), at most 2h, rounded down; " +
	"3 probes every (T-idle)/4 (at most 75s), so that idle + interval x count < T"

// Advice is the keepalive advice for one policy.
type Advice struct {
	// Name is the profile or policy the advice is for, set by the caller.
	Name string `json:"profile,omitempty"`
	// Timeout is the ESTABLISHED idle timeout the advice keeps under (real, unscaled).
	Timeout time.Duration `json:"-"`
	// Scale is the time scale of the lab run the scaled values are for (1: none).
	Scale float64 `json:"scale"`
	Rule  string  `json:"rule"`
	// Idle, Interval, Count are the real keepalive settings; Scaled* are what to
	// configure in a lab run at Scale (whole seconds, at least 1 s, for kernel settings).
	Idle           time.Duration `json:"-"`
	Interval       time.Duration `json:"-"`
	Count          int           `json:"count"`
	ScaledIdle     time.Duration `json:"-"`
	ScaledInterval time.Duration `json:"-"`
	// ProbesCount reports whether TCP keepalive probes refresh the box.
	ProbesCount bool `json:"probes_count"`
	// InsideOnly reports whether only packets from the inside (client) refresh it.
	InsideOnly bool `json:"inside_only"`
	// Consequence is what happens to a connection idle past the timeout.
	Consequence string       `json:"consequence"`
	Items       []AdviceItem `json:"settings"`
	Warnings    []string     `json:"warnings"`
	// UDP is how often a UDP flow must send to keep its entry.
	UDP        time.Duration `json:"-"`
	UDPTimeout time.Duration `json:"-"`
}

// AdviceItem is the setting of one tool.
type AdviceItem struct {
	Tool   string `json:"tool"`
	Config string `json:"config"` // what to write, possibly several lines
	Works  bool   `json:"works"`  // false when this setting cannot keep the connection here
	Note   string `json:"note,omitempty"`
}

// MarshalJSON writes durations as seconds: {"timeout_s": 350, "idle_s": 175, ...}.
func (a Advice) MarshalJSON() ([]byte, error) {
	type plain Advice // without this method
	return json.Marshal(struct {
		plain
		Timeout        float64 `json:"timeout_s"`
		Idle           float64 `json:"idle_s"`
		Interval       float64 `json:"interval_s"`
		ScaledIdle     float64 `json:"scaled_idle_s"`
		ScaledInterval float64 `json:"scaled_interval_s"`
		UDP            float64 `json:"udp_every_s"`
		UDPTimeout     float64 `json:"udp_timeout_s"`
	}{plain(a), a.Timeout.Seconds(), a.Idle.Seconds(), a.Interval.Seconds(), a.ScaledIdle.Seconds(),
		a.ScaledInterval.Seconds(), a.UDP.Seconds(), a.UDPTimeout.Seconds()})
}

// roundDown rounds an idle time down to a value people write.
func roundDown(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Truncate(time.Millisecond)
	case d < time.Minute:
		return d.Truncate(time.Second)
	case d < 10*time.Minute:
		return d.Truncate(5 * time.Second)
	}
	return d.Truncate(time.Minute)
}

// KeepaliveFor applies the margin rule to an idle timeout T (real durations).
func KeepaliveFor(t time.Duration) (idle, interval time.Duration, count int) {
	idle = t / 2
	if t > 2*adviceSlack {
		idle = min(t/2, t-adviceSlack)
	}
	idle = roundDown(min(idle, adviceMaxIdle))
	count = adviceCount
	interval = ((t - idle) / time.Duration(count+1)).Truncate(time.Second)
	interval = max(min(interval, adviceMaxIntvl), time.Second)
	if idle+interval*time.Duration(count) >= t { // tiny T: keep the sum below it
		interval = max((t-idle)/time.Duration(count+1), time.Millisecond)
	}
	return idle, interval, count
}

// scaledSeconds is d scaled by f, in whole seconds (at least 1): kernel keepalive
// settings take seconds.
func scaledSeconds(d time.Duration, f float64) time.Duration {
	s := ScaleDuration(d, f).Truncate(time.Second)
	return max(s, time.Second)
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// Advise computes keepalive settings for a box with policy p, given in real (unscaled)
// durations; f is the time scale of the lab run the settings are for (1 for none).
func Advise(p Policy, f float64) Advice {
	if f <= 0 {
		f = 1
	}
	t := time.Duration(p.Timeouts.TCP.Established)
	idle, intvl, count := KeepaliveFor(t)
	refresh := conntrack.Refresh(p.Refresh)
	a := Advice{
		Timeout: t, Scale: f, Rule: AdviceRule,
		Idle: idle, Interval: intvl, Count: count,
		ScaledIdle: scaledSeconds(idle, f), ScaledInterval: scaledSeconds(intvl, f),
		ProbesCount: refresh == conntrack.RefreshAny || refresh == conntrack.RefreshInside,
		InsideOnly:  refresh == conntrack.RefreshInside,
		Warnings:    []string{},
	}
	a.UDPTimeout = time.Duration(min(p.Timeouts.UDPStream, p.Timeouts.UDP))
	a.UDP, _, _ = KeepaliveFor(a.UDPTimeout)
	a.Consequence = consequence(&p, t)

	// v shows a real duration as configured: scaled whole seconds, with the real value.
	v := func(d time.Duration) string {
		if f == 1 {
			return fmt.Sprint(secs(d))
		}
		return fmt.Sprintf("%d", secs(scaledSeconds(d, f)))
	}
	realNote := ""
	if f != 1 {
		realNote = fmt.Sprintf("scaled by %g for a lab run: real idle %s, interval %s", f, formatDuration(idle), formatDuration(intvl))
	}
	sIdle, sIntvl := v(idle), v(intvl)
	probeTools := a.ProbesCount

	a.Items = append(a.Items, AdviceItem{
		Tool: "Linux sysctl",
		Config: fmt.Sprintf("net.ipv4.tcp_keepalive_time = %s\nnet.ipv4.tcp_keepalive_intvl = %s\nnet.ipv4.tcp_keepalive_probes = %d",
			sIdle, sIntvl, count),
		Works: probeTools,
		Note:  joinNotes("for sockets with SO_KEEPALIVE on (IPv4 and IPv6); the defaults are 7200, 75, 9", realNote),
	})
	goNote := "Go's default (idle 15s, interval 15s, count 9) already sends the first probe within the timeout"
	if t <= 15*time.Second {
		goNote = "Go's default idle of 15s is too long for this box"
	}
	a.Items = append(a.Items, AdviceItem{
		Tool: "Go net.Dialer",
		Config: fmt.Sprintf("net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: %s, Interval: %s, Count: %d}}",
			goDur(ScaleDuration(idle, f)), goDur(ScaleDuration(intvl, f)), count),
		Works: probeTools,
		Note:  joinNotes(goNote, realNote),
	})
	userTimeout := ScaleDuration(idle+intvl*time.Duration(count), f)
	a.Items = append(a.Items, AdviceItem{
		Tool: "libpq connection string",
		Config: fmt.Sprintf("keepalives=1 keepalives_idle=%s keepalives_interval=%s keepalives_count=%d tcp_user_timeout=%d",
			sIdle, sIntvl, count, userTimeout.Milliseconds()),
		Works: probeTools,
		Note:  "tcp_user_timeout (ms) makes a write into a dead path fail as soon as keepalive would",
	})
	a.Items = append(a.Items, AdviceItem{
		Tool:   "ssh_config",
		Config: fmt.Sprintf("ServerAliveInterval %s\nServerAliveCountMax %d", sIdle, count),
		Works:  true,
		Note:   "server-alive messages travel inside the encrypted channel: they are data, so they count on every box",
	})
	// Redis derives interval = N/3 and 3 probes from tcp-keepalive N: dead after 2N.
	redis := roundDown(min(idle, (t-time.Second)/2))
	redisWorks := probeTools && !a.InsideOnly
	redisNote := "redis.conf, server side; Redis probes every N/3 after N idle, 3 times (default 300)"
	if a.InsideOnly {
		redisNote = "cannot help: this box counts only packets from the inside, and the Redis server is outside; set keepalive in the client"
	}
	a.Items = append(a.Items, AdviceItem{
		Tool:   "Redis",
		Config: fmt.Sprintf("tcp-keepalive %s", v(redis)),
		Works:  redisWorks,
		Note:   redisNote,
	})
	a.Items = append(a.Items, AdviceItem{
		Tool:   "nginx upstream",
		Config: fmt.Sprintf("upstream backend {\n    keepalive 32;\n    keepalive_timeout %ss;\n}", sIdle),
		Works:  true,
		Note:   "nginx closes idle upstream connections itself before the box forgets them",
	})
	hik := AdviceItem{Tool: "HikariCP", Works: true,
		Note: "keepaliveTime runs a validation query: data, so it counts on every box; it must stay below maxLifetime"}
	if idle < hikariMinKeep {
		hik.Works = false
		hik.Config = fmt.Sprintf("idleTimeout=%d", max(ScaleDuration(idle, f), 10*time.Second).Milliseconds())
		hik.Note = fmt.Sprintf("cannot help with keepaliveTime: its minimum is 30s, above the %s needed; retire idle connections with idleTimeout (minimum 10s) instead", formatDuration(idle))
	} else {
		hik.Config = fmt.Sprintf("keepaliveTime=%d", ScaleDuration(idle, f).Milliseconds())
		if f != 1 && ScaleDuration(idle, f) < hikariMinKeep {
			hik.Note += "; HikariCP refuses values below 30000 ms, so it cannot run at this time scale"
		}
	}
	a.Items = append(a.Items, hik)

	if !a.ProbesCount {
		a.Warnings = append(a.Warnings, fmt.Sprintf(
			"this box ignores TCP keepalive probes (refresh: %s): Linux sysctls, Go KeepAliveConfig, libpq keepalives and Redis tcp-keepalive cannot keep a connection alive through it; "+
				"it needs application data: a heartbeat (HTTP request, HTTP/2 PING, WebSocket ping, SSH server-alive, HikariCP keepaliveTime) more often than every %s",
			p.Refresh, FormatScaled(idle, f)))
	}
	if conntrack.OnFull(p.OnFull) == conntrack.EvictLRU {
		a.Warnings = append(a.Warnings, fmt.Sprintf("this box evicts the least recently active connection when its table of %d is full: "+
			"keepalive keeps a connection off the bottom of the list only while fewer than %d connections are more recent; no setting protects it from a burst of new ones", p.Capacity, p.Capacity))
	}
	if a.InsideOnly {
		a.Warnings = append(a.Warnings, "only packets from the inside (client side) refresh this box: keepalive sent by the server does not count")
	}
	if t >= linuxDefaultIdl+adviceMaxIntvl*10 {
		a.Warnings = append(a.Warnings, fmt.Sprintf("this box keeps idle TCP connections for %s: the OS defaults (7200s idle) already fit once SO_KEEPALIVE is on", formatDuration(t)))
	}
	if f != 1 {
		a.Warnings = append(a.Warnings, fmt.Sprintf("values are scaled by %g for a lab run and rounded down to whole seconds where the kernel takes seconds; the real ones are in the notes", f))
	}
	return a
}

func consequence(p *Policy, t time.Duration) string {
	after := "a connection idle for " + formatDuration(t) + " is forgotten: "
	switch {
	case p.ResetOnExpire:
		return after + "the box sends a RST to both ends at that moment; the next read or write fails with ECONNRESET"
	case p.Orphan == OrphanReset:
		return after + "the next packet on it is answered with a RST: ECONNRESET"
	case p.Orphan == OrphanICMP:
		return after + "the next packet on it is answered with ICMP administratively prohibited: EHOSTUNREACH"
	case p.Orphan == OrphanPickup && p.NAT.Enabled:
		return after + "the next outbound packet gets a new outside port; the server answers it with a RST: ECONNRESET"
	case p.Orphan == OrphanPickup:
		return after + "the next packet re-creates the entry mid-stream: the connection survives"
	}
	return after + fmt.Sprintf("packets on it are dropped silently; a write hangs until TCP gives up (about %s with tcp_retries2=15) unless TCP_USER_TIMEOUT is set", formatDuration(linuxRetries2))
}

func joinNotes(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}

// goDur writes d as a Go expression: "175 * time.Second", "1500 * time.Millisecond".
func goDur(d time.Duration) string {
	switch {
	case d%time.Hour == 0 && d >= time.Hour:
		return fmt.Sprintf("%d * time.Hour", d/time.Hour)
	case d%time.Second == 0:
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	}
	return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
}

// String renders the advice as text.
func (a Advice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ESTABLISHED idle timeout %s\n", FormatScaled(a.Timeout, a.Scale))
	fmt.Fprintf(&b, "  %s\n", a.Consequence)
	fmt.Fprintf(&b, "keepalive: idle %s, interval %s, %d probes\n", FormatScaled(a.Idle, a.Scale), FormatScaled(a.Interval, a.Scale), a.Count)
	fmt.Fprintf(&b, "  margin rule: %s\n", a.Rule)
	for _, w := range a.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, it := range a.Items {
		mark := ""
		if !it.Works {
			mark = "  [cannot help here]"
		}
		fmt.Fprintf(&b, "\n%s%s\n", it.Tool, mark)
		for _, l := range strings.Split(it.Config, "\n") {
			fmt.Fprintf(&b, "    %s\n", l)
		}
		if it.Note != "" {
			fmt.Fprintf(&b, "  # %s\n", it.Note)
		}
	}
	fmt.Fprintf(&b, "\nUDP: send a datagram at least every %s (UDP timeout %s)\n", FormatScaled(a.UDP, a.Scale), FormatScaled(a.UDPTimeout, a.Scale))
	return b.String()
}
