package scenarios

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios/agent"
)

// Variant is another run of the same story, named NAME:VARIANT (`scenario run
// tcp-keepalive-saves:scale`); `scenario run --all` plays every story and every variant.
type Variant struct {
	// Name is the variant's id ([a-z0-9-]), unique within the story.
	Name string `yaml:"name" json:"name"`
	// TimeScale multiplies every span of time of the story by this factor: the policy's
	// timeouts, the steps (at, wait, idle, timeout), the expectations' at, the story's
	// timeout, the agents' flags (agent.ScaleArgs) and ${dur:D} / ${sec:D} in files,
	// setup and commands. The story is the same, played slower: a `scale` variant
	// shows that it does not pass only because its timeouts are short (Go turns TCP
	// keepalive on at 15 s by default, for instance).
	TimeScale float64 `yaml:"time_scale" json:"time_scale"`
	// Why says what the variant shows.
	Why  string `yaml:"why" json:"why,omitempty"`
	Line int    `yaml:"-" json:"-"`
}

// GoKeepaliveDefault is the TCP keepalive idle time and interval Go gives every
// connection a net.Dialer or net.ListenConfig makes unless told otherwise
// (net.KeepAliveConfig, "defaultTCPKeepAliveIdle"): a story whose box forgets a
// connection sooner cannot tell whether a program left Go's default on.
const GoKeepaliveDefault = 15 * time.Second

// durVar is ${dur:D} (D scaled, written 18s or 1500ms) or ${sec:D} (D scaled, in seconds:
// 18, 1.5), for the durations real programs read from files and command lines.
var durVar = regexp.MustCompile(`\$\{(dur|sec):([^}]*)\}`)

// checkTimeVar checks a ${dur:D} or ${sec:D} reference; ok is false for other names.
func checkTimeVar(name string) (ok bool, err error) {
	kind, d, found := strings.Cut(name, ":")
	if !found || (kind != "dur" && kind != "sec") {
		return false, nil
	}
	if v, perr := time.ParseDuration(d); perr != nil || v < 0 {
		return true, fmt.Errorf("${%s}: %q is not a duration like 2s", name, d)
	}
	return true, nil
}

// resolveTimes replaces ${dur:D} and ${sec:D} in text, D multiplied by f.
func resolveTimes(text string, f float64) string {
	return durVar.ReplaceAllStringFunc(text, func(m string) string {
		sub := durVar.FindStringSubmatch(m)
		d, err := time.ParseDuration(sub[2])
		if err != nil {
			return m // refused by check; not reached
		}
		d = time.Duration(float64(d) * f).Round(time.Millisecond)
		if sub[1] == "sec" {
			return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		}
		if d%time.Second == 0 {
			return fmt.Sprintf("%ds", d/time.Second)
		}
		return fmt.Sprintf("%dms", d/time.Millisecond)
	})
}

// resolveAllTimes resolves ${dur:D} and ${sec:D} in the files, setup commands and
// commands of s, with D multiplied by f.
func (s *Scenario) resolveAllTimes(f float64) {
	for name, text := range s.Files {
		s.Files[name] = resolveTimes(text, f)
	}
	cmd := func(c *Command) {
		c.Sh = resolveTimes(c.Sh, f)
		for i, w := range c.Argv {
			c.Argv[i] = resolveTimes(w, f)
		}
	}
	for i := range s.Setup {
		cmd(&s.Setup[i])
	}
	for _, p := range s.Processes {
		if p.Command != nil {
			cmd(p.Command)
		}
		for i, a := range p.Args {
			p.Args[i] = resolveTimes(a, f)
		}
	}
}

// checkVariants checks the variants' names and factors, and that each can be derived.
func (s *Scenario) checkVariants() error {
	seen := map[string]bool{}
	for i, v := range s.Variants {
		path := fmt.Sprintf("variants[%d]", i)
		if v.Name == "" {
			return s.at(path, "missing key name: give the variant an id like scale")
		}
		if !validName.MatchString(v.Name) {
			return s.at(path+".name", "%q: use a-z, 0-9 and '-'", v.Name)
		}
		if seen[v.Name] {
			return s.at(path+".name", "%q is already the name of another variant", v.Name)
		}
		seen[v.Name] = true
		if v.TimeScale == 0 {
			return s.at(path, "missing key time_scale: the factor every span of time of the story is multiplied by, like 6")
		}
		base := s.Scale
		if base == 0 {
			base = 1
		}
		if err := policy.CheckScale(v.TimeScale * base); err != nil {
			return s.at(path+".time_scale", "%v", err)
		}
		if _, err := s.pol.Scale(v.TimeScale); err != nil {
			return s.at(path+".time_scale", "%v", err)
		}
	}
	return nil
}

// VariantNames lists the story's variants, in file order.
func (s *Scenario) VariantNames() []string {
	var names []string
	for _, v := range s.Variants {
		names = append(names, v.Name)
	}
	return names
}

// Variant returns the story as its variant name plays it, a scenario of its own named
// NAME:VARIANT. The story itself is left as it is.
func (s *Scenario) Variant(name string) (*Scenario, error) {
	var v *Variant
	for _, x := range s.Variants {
		if x.Name == name {
			v = x
		}
	}
	if v == nil {
		known := "it has none"
		if len(s.Variants) > 0 {
			known = "known variants: " + strings.Join(s.VariantNames(), ", ")
		}
		return nil, fmt.Errorf("scenario %s has no variant %q; %s", s.Name, name, known)
	}
	d, err := parseRaw(s.File, s.src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.File, err)
	}
	if err := d.scaleTime(v.TimeScale); err != nil {
		return nil, fmt.Errorf("%s: variant %s: %w", s.File, name, err)
	}
	d.Name = s.Name + ":" + name
	d.variant = v
	d.Variants = nil
	return d, nil
}

// VariantInfo is the variant a scenario was derived as (nil for a story as written).
func (s *Scenario) VariantInfo() *Variant { return s.variant }

// scaleTime multiplies every span of time of a freshly parsed scenario by f (Variant).
func (s *Scenario) scaleTime(f float64) error {
	pol, err := s.pol.Scale(f)
	if err != nil {
		return err
	}
	s.pol = pol
	if s.Scale == 0 {
		s.Scale = 1
	}
	s.Scale *= f
	mul := func(d *Duration) {
		if d != nil {
			*d = Duration(time.Duration(float64(*d) * f).Round(time.Millisecond))
		}
	}
	for _, st := range s.Steps {
		mul(st.At)
		mul(st.Wait)
		mul(st.Idle)
		if len(st.WaitExit) > 0 && st.Timeout == nil {
			t := Duration(defaultWaitExit)
			st.Timeout = &t
		}
		mul(st.Timeout)
		for i, kv := range st.Set {
			if strings.HasPrefix(kv.Key, "timeouts.") {
				if v, ok := agent.ScaleDuration(kv.Value, f); ok {
					st.Set[i].Value = v
				}
			}
		}
	}
	for _, e := range s.Expect {
		if e.At != nil {
			mul(e.At.Min)
			mul(e.At.Max)
		}
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	mul(&s.Timeout)
	for _, p := range s.Processes {
		if p.Agent != "" {
			p.Args = agent.ScaleArgs(p.Args, f)
		}
	}
	s.resolveAllTimes(f)
	return nil
}
