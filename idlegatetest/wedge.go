package idlegatetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/idlegate/idlegate/gateway"
	"github.com/idlegate/idlegate/lab"
)

// Wedge puts idlegate's gateway between two network namespaces that already exist,
// as `idlegate wedge A B` does, for test t, and takes it out again when the test and
// its subtests end: the routes, links and addresses of both sides are as they were.
// a is the inside (client) side and b the outside (server) side, each written as a
// wedge target:
//
//	netns:NAME   pid:PID   path:FILE   docker:NAME   podman:NAME   ip:ADDR
//
// so that a test can put the box between the containers a compose file or
// testcontainers started, or between two namespaces it made. a must already reach
// b (a route and an address on each side); the wedge carries A's traffic to B's
// addresses, one per IP family, and their answers. TCP connections already open
// between them are adopted: their next segment opens an entry, as Linux's
// conntrack picks up a connection mid-stream after a reboot.
//
// The Lab it returns is used as New's is: Dial and InClient run in a, Listen and
// InServer in b, ClientAddr and ServerAddr are the addresses the wedge carries,
// and Table, Events, Expire, Flush, SetPolicy and Pcap work on the wedge's
// gateway. A policy that translates addresses needs NATAddr. As New does, Wedge
// skips t on a machine that cannot run a gateway, and fails t instead in CI.
func Wedge(t testing.TB, a, b string, opts ...Option) *Lab {
	t.Helper()
	return forTest(t, func() (*Lab, error) { return StartWedge(a, b, opts...) })
}

// StartWedge is Wedge outside a test; the caller must Close the Lab, which takes the
// wedge out. Its error says what went wrong in one sentence: a target that does not
// resolve (lab.ErrNoSuchNamespace, lab.ErrNotRunning), two targets that are one
// namespace (lab.ErrSameNamespace), a side already wedged (lab.ErrWedged), a side
// with no route to the other (lab.ErrNoRoute), or a machine that cannot run a
// gateway (lab.ErrNotRoot, tun.ErrNoTUN).
func StartWedge(a, b string, opts ...Option) (*Lab, error) {
	c, err := collect(opts)
	if err != nil {
		return nil, err
	}
	real, profile, scale, err := build(opts)
	if err != nil {
		return nil, err
	}
	if real.NAT.Enabled && len(c.nat) == 0 {
		return nil, errors.New("idlegatetest: the policy translates addresses (nat.enabled) and a wedge has no address of its own to translate to: give NATAddr(ADDR), an address neither side uses, or Set(\"nat.enabled\", \"false\")")
	}
	cfg := lab.WedgeConfig{Name: newName(), NAT: c.nat}
	for i, s := range []string{a, b} {
		tg, err := lab.ParseTarget(s)
		if err != nil {
			return nil, fmt.Errorf("idlegatetest: side %s: %w", "AB"[i:i+1], err)
		}
		if i == 0 {
			cfg.A = tg
		} else {
			cfg.B = tg
		}
	}
	run, err := gateway.StartWedge(context.Background(), cfg, real, gateway.WedgeOptions{LabOptions: gateway.LabOptions{Profile: profile, TimeScale: scale}})
	if err != nil {
		return nil, startError("start a wedge", err)
	}
	w := run.Wedge
	l := &Lab{run: run, name: w.Name}
	for i := range w.Sides {
		s := &w.Sides[i]
		l.ns[i] = s.Path
		if s.Target.Kind == "netns" {
			l.ns[i] = s.Target.Value
		}
		for _, ad := range s.Addrs {
			if ad.Is4() {
				l.addr4[i] = ad
			} else {
				l.addr6[i] = ad
			}
		}
	}
	return l.begin(real, profile, scale, w.Sides[0].Path, w.Sides[1].Path, lab.OpenNetnsPath)
}
