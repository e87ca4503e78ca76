package idlegatetest

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/idlegate/idlegate/policy"
)

// An Option says what policy a lab's gateway runs: a base (Profile or FromPolicy;
// Linux's netfilter defaults when neither is given), keys changed over it (Set), and
// the time scale every timeout runs at (TimeScale). The order of options does not
// matter: the base comes first, then every Set in the order given, then the scale.
// New and Start take them; Lab.SetPolicy takes Set options.
type Option func(*config) error

// config collects the options.
type config struct {
	base    *policy.Policy
	profile string
	baseBy  string // the option that gave base, for the error about two bases
	sets    [][2]string
	scale   float64 // 0: not given
	nat     []netip.Addr
}

// Profile starts from the built-in middlebox profile name, such as
// "aws-nat-gateway" or "azure-lb-tcp-reset" (`idlegate profiles` lists them, every
// value with its source). An unknown name is an error naming the known ones.
func Profile(name string) Option {
	return func(c *config) error {
		p, err := policy.ProfilePolicy(name)
		if err != nil {
			return err
		}
		if err := c.setBase(&p, fmt.Sprintf("Profile(%q)", name)); err != nil {
			return err
		}
		c.profile = name
		return nil
	}
}

// FromPolicy starts from p, with its timeouts in real (unscaled) units: a policy
// from policy.Load (a policy file), policy.Default or a profile's Policy.
func FromPolicy(p policy.Policy) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("FromPolicy: %w", err)
		}
		return c.setBase(&p, "FromPolicy")
	}
}

// Set changes one policy key, written as in a policy file or `idlegate lab up
// --set`: a dotted path and a YAML value, such as Set("orphan", "reset") or
// Set("timeouts.tcp.established", "60s"). Durations are real ones, scaled with
// the rest. An unknown key or a bad value is an error naming the known ones.
func Set(key, value string) Option {
	return func(c *config) error {
		c.sets = append(c.sets, [2]string{key, value})
		return nil
	}
}

// TimeScale multiplies every idle timeout by f, so that a box that forgets after
// 350 s forgets after 3.5 s at 0.01. f must be above 0 and at most 1000. The
// keepalive settings a test gives its sockets do not scale by themselves: take them
// from Lab.Advice, which computes them for the scaled timeout.
func TimeScale(f float64) Option {
	return func(c *config) error {
		if err := policy.CheckScale(f); err != nil {
			return err
		}
		c.scale = f
		return nil
	}
}

// NATAddr is, for a wedge (Wedge, StartWedge), an address the gateway translates
// connections from A to, one per IP family, as `idlegate wedge --nat-addr` takes it:
// an address neither side uses, which the wedge routes back to itself on B. A policy
// that translates (nat.enabled, as the NAT profiles do) needs one on a wedge; one
// without NATAddr is refused. A lab has its own NAT address and refuses NATAddr.
func NATAddr(a netip.Addr) Option {
	return func(c *config) error {
		if !a.IsValid() {
			return errors.New("NATAddr: the address is not valid: give one such as netip.MustParseAddr(\"198.19.0.9\")")
		}
		for _, o := range c.nat {
			if o.Is4() == a.Is4() {
				return fmt.Errorf("NATAddr(%s) and NATAddr(%s): one NAT address per IP family", o, a)
			}
		}
		c.nat = append(c.nat, a.Unmap())
		return nil
	}
}

func (c *config) setBase(p *policy.Policy, by string) error {
	if c.base != nil {
		return fmt.Errorf("%s and %s both give the policy to start from: keep one, and change keys with Set", c.baseBy, by)
	}
	c.base, c.baseBy, c.profile = p, by, ""
	return nil
}

// collect applies opts to a config.
func collect(opts []Option) (config, error) {
	var c config
	for _, o := range opts {
		if o == nil {
			return c, errors.New("idlegatetest: a nil Option was given")
		}
		if err := o(&c); err != nil {
			return c, fmt.Errorf("idlegatetest: %w", err)
		}
	}
	return c, nil
}

// build is the policy opts give, in real units, with the profile it came from ("" if
// none) and the time scale (1 if none).
func build(opts []Option) (policy.Policy, string, float64, error) {
	c, err := collect(opts)
	if err != nil {
		return policy.Policy{}, "", 0, err
	}
	p := policy.Default()
	if c.base != nil {
		p = *c.base
	}
	if p, err = c.applySets(p); err != nil {
		return policy.Policy{}, "", 0, err
	}
	scale := 1.0
	if c.scale != 0 {
		scale = c.scale
	}
	return p, c.profile, scale, nil
}

// applySets applies c's Set options to p, in order; on error p is returned unchanged.
func (c *config) applySets(p policy.Policy) (policy.Policy, error) {
	q := p
	for _, kv := range c.sets {
		if err := q.Set(kv[0], kv[1]); err != nil {
			return p, fmt.Errorf("idlegatetest: Set(%q, %q): %w", kv[0], kv[1], err)
		}
	}
	return q, nil
}
