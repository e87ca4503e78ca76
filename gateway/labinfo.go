package gateway

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/idlegate/idlegate/control"
	"github.com/idlegate/idlegate/internal/version"
)

// What the gateway knows of the lab it runs in (StartLab tells it): GET /v1/lab
// answers it, and a policy change on a scaled lab is made in the lab's real units.
// infoMu guards info and serialises policy changes made through the API.

// setLab records the lab's description; l.Policy is in real units and l.TimeScale
// the scale the engine runs it at.
func (g *Gateway) setLab(l control.Lab) {
	g.infoMu.Lock()
	defer g.infoMu.Unlock()
	g.info = l
}

// Lab describes the lab the gateway runs in, with its uptime and live policy.
func (g *Gateway) Lab() control.Lab {
	g.infoMu.Lock()
	defer g.infoMu.Unlock()
	l := g.info
	if l.PID == 0 {
		l.PID = os.Getpid()
	}
	if l.Started.IsZero() {
		l.Started = g.start
	}
	l.Version = version.Get().Version
	l.Uptime = g.Now().Sub(g.start).Seconds()
	l.PolicyView = g.policyViewLocked()
	return l
}

func (g *Gateway) serveLab(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, g.Lab())
}

// policyViewLocked is the policy in real units and in force. g.infoMu is held.
func (g *Gateway) policyViewLocked() control.PolicyView {
	v := control.PolicyView{Profile: g.info.Profile, TimeScale: g.info.Scale(), Policy: g.cfg.Engine.Policy()}
	if v.TimeScale != 1 {
		v.InForce, v.Policy = v.Policy, g.info.Policy
	}
	return v
}

// conflictError is a policy change a running gateway cannot make (capacity, NAT).
type conflictError struct{ err error }

func (e *conflictError) Error() string { return e.err.Error() }

// SetPolicy changes policy keys live, each "key=value" as policy.Policy.Set takes it,
// all or none. On a scaled lab the values are in real units: the policy is changed
// in real units, then scaled into the engine, as lab up does. It returns the policy
// after the change.
func (g *Gateway) SetPolicy(sets []string) (control.PolicyView, error) {
	g.infoMu.Lock()
	defer g.infoMu.Unlock()
	scale := g.info.Scale()
	p := g.cfg.Engine.Policy()
	if scale != 1 {
		p = g.info.Policy
	}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return control.PolicyView{}, fmt.Errorf("%q is not KEY=VALUE, e.g. timeouts.tcp.established=10s", kv)
		}
		if err := p.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return control.PolicyView{}, err
		}
	}
	run := p
	if scale != 1 {
		var err error
		if run, err = p.Scale(scale); err != nil {
			return control.PolicyView{}, err
		}
	}
	if err := g.cfg.Engine.SetPolicy(run); err != nil {
		return control.PolicyView{}, &conflictError{err}
	}
	g.info.Policy = p
	return g.policyViewLocked(), nil
}

// updateLab changes the lab's description (a wedge's sides, after a re-attach)
// and returns it as the state file has it.
func (g *Gateway) updateLab(f func(*control.Lab)) control.Lab {
	g.infoMu.Lock()
	defer g.infoMu.Unlock()
	f(&g.info)
	return g.info
}
