package agent

import (
	"net"
	"time"
)

// keepaliveOpts are the TCP keepalive flags every TCP agent has, servers and clients alike:
// --keepalive, --keepalive-idle, --keepalive-intvl, --keepalive-cnt. Without any of them
// SO_KEEPALIVE is off on every socket the agent dials or accepts. Go turns keepalive on by
// default (15 s idle, 15 s interval, 9 probes, net.Dialer and net.ListenConfig alike): a
// story whose box forgets after more than 15 s would then see a connection survive that
// nobody asked to keep alive.
type keepaliveOpts struct {
	on    bool          // --keepalive: SO_KEEPALIVE with the namespace's sysctls for the rest
	idle  time.Duration // TCP_KEEPIDLE; 0: the kernel's (net.ipv4.tcp_keepalive_time)
	intvl time.Duration // TCP_KEEPINTVL; 0: the kernel's (net.ipv4.tcp_keepalive_intvl)
	cnt   int           // TCP_KEEPCNT; 0: the kernel's (net.ipv4.tcp_keepalive_probes)
}

// register adds the keepalive flags to f; side is "dials" or "accepts", for the help.
func (o *keepaliveOpts) register(f *flags, side string) {
	f.BoolVar(&o.on, "keepalive", false, "SO_KEEPALIVE on every connection it "+side+", with the kernel's (the namespace's) TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT unless set below")
	f.DurationVar(&o.idle, "keepalive-idle", 0, "TCP_KEEPIDLE: idle time before the first keepalive probe (enables SO_KEEPALIVE)")
	f.DurationVar(&o.intvl, "keepalive-intvl", 0, "TCP_KEEPINTVL: time between keepalive probes (enables SO_KEEPALIVE)")
	f.IntVar(&o.cnt, "keepalive-cnt", 0, "TCP_KEEPCNT: unanswered probes before the kernel gives up (enables SO_KEEPALIVE)")
}

// check reports a usage error for a negative value.
func (o *keepaliveOpts) check(f *flags) error {
	if err := f.nonNegative(map[string]time.Duration{"keepalive-idle": o.idle, "keepalive-intvl": o.intvl}); err != nil {
		return err
	}
	if o.cnt < 0 {
		return usagef("agent %s: --keepalive-cnt %d is negative", f.kind, o.cnt)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"keepalive-idle", o.idle}, {"keepalive-intvl", o.intvl}} {
		if d.v > 0 && d.v < time.Second {
			return usagef("agent %s: --%s %v is below the option's unit, 1s", f.kind, d.name, d.v)
		}
	}
	return nil
}

// enabled reports whether any keepalive flag was given.
func (o *keepaliveOpts) enabled() bool { return o.on || o.idle > 0 || o.intvl > 0 || o.cnt > 0 }

// config is what net.Dialer and net.ListenConfig take: disabled, or enabled with the
// flags given and the kernel's values for the others. The KeepAlive field beside it must
// be -1, so that Go's 15 s default never applies.
func (o *keepaliveOpts) config() net.KeepAliveConfig {
	if !o.enabled() {
		return net.KeepAliveConfig{Enable: false}
	}
	c := net.KeepAliveConfig{Enable: true, Idle: orKernel(o.idle), Interval: orKernel(o.intvl), Count: o.cnt}
	if o.cnt == 0 {
		c.Count = -1
	}
	return c
}

// dialer is a net.Dialer with exactly the keepalive the flags ask for.
func (o *keepaliveOpts) dialer() net.Dialer {
	return net.Dialer{KeepAlive: -1, KeepAliveConfig: o.config()}
}

// listenConfig is a net.ListenConfig whose accepted connections have exactly the
// keepalive the flags ask for.
func (o *keepaliveOpts) listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, KeepAliveConfig: o.config()}
}

// orKernel maps an unset (zero) keepalive flag to -1: net.KeepAliveConfig leaves the
// kernel's value in place for a negative field, where zero would mean Go's 15 s.
func orKernel(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// report emits the `keepalive` event of an accepted connection, the options read back from
// its socket, when keepalive flags were given.
func (o *keepaliveOpts) report(em *Emitter, id string, c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok && o.enabled() {
		em.Emit(Event{Conn: id, Event: EvKeepalive, Detail: sockopts(tc)})
	}
}
