package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/idlegate/idlegate/internal/yamlx"
	"github.com/idlegate/idlegate/policy"
	"github.com/idlegate/idlegate/scenarios/agent"
)

// Scenario is one story, as a scenario file writes it. Parse fills it and checks it;
// Run plays it.
type Scenario struct {
	// Name is the scenario's id ([a-z0-9-]); for a file of the playbook, its base name.
	Name string `yaml:"name" json:"name"`
	// Title is one line: what happens.
	Title string `yaml:"title" json:"title"`
	// Concept is the idea the story shows (HTTP keep-alive vs TCP keepalive vs
	// heartbeat, TIME_WAIT, LRU ...).
	Concept string `yaml:"concept" json:"concept"`
	// Story tells what the timeline will show.
	Story string `yaml:"story" json:"story,omitempty"`
	// Fix is the cure in real configuration.
	Fix string `yaml:"fix" json:"fix,omitempty"`
	// Profile names a built-in middlebox profile (policy.Profiles) the policy starts
	// from; the policy block's keys override it.
	Profile string `yaml:"profile" json:"profile,omitempty"`
	// PolicyYAML is inline policy YAML, read as a policy file is (`from: PROFILE`
	// included).
	PolicyYAML rawNode `yaml:"policy" json:"-"`
	// Scale multiplies every timeout of the resulting policy (profile and block alike),
	// so that a story can be written in real units: 0.01 turns 350s into 3.5s. 0 means 1.
	Scale float64 `yaml:"scale" json:"scale,omitempty"`
	// Files are written into the scenario's temporary directory ${dir} before Setup,
	// mode 0600; ${...} variables in their text are expanded.
	Files map[string]string `yaml:"files" json:"-"`
	// Setup commands run in the root namespace, in order, before the story starts;
	// each must exit 0 (generate keys, fix up files).
	Setup []Command `yaml:"setup" json:"-"`
	// Processes are what runs in the namespaces: built-in agents or any program.
	Processes []*Process `yaml:"processes" json:"processes"`
	// Steps run one after the other from the start of the story.
	Steps []*Step `yaml:"steps" json:"-"`
	// Expect lists what must have happened when the steps are done.
	Expect []*Expect `yaml:"expect" json:"-"`
	// Timeout bounds the whole story (default 60s); past it the run fails.
	Timeout Duration `yaml:"timeout" json:"-"`
	// Variants are other runs of the same story, NAME:VARIANT (see Variant).
	Variants []*Variant `yaml:"variants" json:"variants,omitempty"`

	// File is where the scenario was read from, for messages.
	File string `yaml:"-" json:"file,omitempty"`
	// lines maps a field's dotted path to its line in File.
	lines map[string]int
	// pol is the parsed policy.
	pol policy.Policy
	// src is the file's text, from which Variant derives a variant.
	src []byte
	// variant is what this scenario was derived as; nil for a story as written.
	variant *Variant
}

// defaultWaitExit bounds a wait_exit step that gives no timeout.
const defaultWaitExit = 30 * time.Second

// Command is a program with its arguments, or a shell line: a list of words
// (`[ssh-keygen, -q, -f, "${dir}/key"]`) or a mapping `{sh: "..."}`.
type Command struct {
	Argv []string `yaml:"argv"`
	Sh   string   `yaml:"sh"`
	Line int      `yaml:"-"`
}

// DecodeYAML reads a list of words or {sh: LINE} (yamlx.NodeDecoder).
func (c *Command) DecodeYAML(n *yaml.Node, path string) error {
	c.Line = n.Line
	switch n.Kind {
	case yaml.SequenceNode:
		for _, w := range n.Content {
			if w.Kind != yaml.ScalarNode {
				return yamlx.Errorf(w.Line, "%s: each word of a command is a single value", path)
			}
			c.Argv = append(c.Argv, w.Value)
		}
	case yaml.MappingNode:
		if len(n.Content) != 2 || n.Content[0].Value != "sh" || n.Content[1].Kind != yaml.ScalarNode {
			return yamlx.Errorf(n.Line, "%s: a command is a list of words or {sh: \"shell line\"}", path)
		}
		c.Sh = n.Content[1].Value
	default:
		return yamlx.Errorf(n.Line, "%s: a command is a list of words or {sh: \"shell line\"}, got %s", path, yamlx.KindName(n))
	}
	if len(c.Argv) == 0 && strings.TrimSpace(c.Sh) == "" {
		return yamlx.Errorf(n.Line, "%s: empty command", path)
	}
	return nil
}

// argv returns the command's words, a shell line as sh -c, in a new slice: the
// caller may change it without changing the (cached, shared) scenario.
func (c Command) argv() []string {
	if c.Sh != "" {
		return []string{"/bin/sh", "-c", c.Sh}
	}
	return slices.Clone(c.Argv)
}

func (c Command) String() string {
	if c.Sh != "" {
		return c.Sh
	}
	return strings.Join(c.Argv, " ")
}

// Process is a program the story runs in one namespace.
type Process struct {
	// Name is how steps and expectations refer to it; an agent's --name.
	Name string `yaml:"name" json:"name"`
	// Side is the namespace: client or server.
	Side string `yaml:"side" json:"side"`
	// Agent is a built-in agent kind (`idlegate agent KIND`); Args are its flags.
	Agent string   `yaml:"agent" json:"agent,omitempty"`
	Args  []string `yaml:"args" json:"args,omitempty"`
	// Command is any other program; exactly one of Agent and Command is set.
	Command *Command `yaml:"command" json:"-"`
	// Stdin gives the process a pipe for `send` steps; otherwise stdin is empty.
	Stdin bool `yaml:"stdin" json:"-"`
	Line  int  `yaml:"-" json:"-"`
}

// Step is one action of the story. Exactly one action key is set, optionally with At
// (first wait until that time after the start) and Timeout (for wait_exit).
type Step struct {
	At         *Duration `yaml:"at"`
	Start      []string  `yaml:"start"`
	Wait       *Duration `yaml:"wait"`
	Idle       *Duration `yaml:"idle"`
	Send       *Send     `yaml:"send"`
	CloseStdin []string  `yaml:"close_stdin"`
	WaitExit   []string  `yaml:"wait_exit"`
	Timeout    *Duration `yaml:"timeout"`
	Kill       []string  `yaml:"kill"`
	Signal     string    `yaml:"signal"`
	Blackhole  string    `yaml:"blackhole"`
	Restore    string    `yaml:"restore"`
	Flush      bool      `yaml:"flush"`
	Set        Settings  `yaml:"set"`
	Note       string    `yaml:"note"`
	Line       int       `yaml:"-"`
}

// Send writes Text to a process's stdin.
type Send struct {
	To   string `yaml:"to"`
	Text string `yaml:"text"`
}

// Expect is one expectation. Its kind follows from its keys:
//
//	of + outcome   the agent's result outcome per connection (of: AGENT or AGENT/CONN);
//	               every connection's, or with count/min/max how many have it; at: min/max
//	               bounds when the results came
//	of + event     how many events of that kind the agent reported (err: filters errors)
//	gateway        a gateway counter (new, expired, evicted, closed, flushed, time_wait,
//	               keepalive_probes, table_full, orphans, pickups, source_limit, resets),
//	               optionally for some server ports only
//	of + exit      a process's exit code
//	of + output / output_lacks   text that a process printed (stdout or stderr) or did not
//	of + running   whether it was still running when the steps were done (hung)
type Expect struct {
	Of          string    `yaml:"of"`
	Outcome     []string  `yaml:"outcome"`
	At          *Interval `yaml:"at"`
	Event       string    `yaml:"event"`
	Err         string    `yaml:"err"`
	Gateway     string    `yaml:"gateway"`
	Port        []int     `yaml:"port"`
	Count       *int      `yaml:"count"`
	Min         *int      `yaml:"min"`
	Max         *int      `yaml:"max"`
	Exit        *int      `yaml:"exit"`
	Output      string    `yaml:"output"`
	OutputLacks string    `yaml:"output_lacks"`
	Running     *bool     `yaml:"running"`
	Why         string    `yaml:"why"`
	Line        int       `yaml:"-"`
}

// Interval bounds a time since the start of the story.
type Interval struct {
	Min *Duration `yaml:"min"`
	Max *Duration `yaml:"max"`
}

func (e *Expect) count() Count { return Count{Exact: e.Count, Min: e.Min, Max: e.Max} }

// GatewayCounters are what a gateway expectation may count.
var GatewayCounters = []string{"new", "expired", "evicted", "closed", "flushed", "time_wait", "keepalive_probes",
	"table_full", "orphans", "pickups", "source_limit", "resets"}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// knownVars are the ${...} variables of files, setup commands and process arguments.
var knownVars = []string{"dir", "lab", "client4", "server4", "client6", "server6", "nat4", "nat6", "bin"}

// Parse reads and checks a scenario file; file names it in messages. A mistake is an
// error naming the file, the line and the field.
func Parse(file string, data []byte) (*Scenario, error) {
	s, err := parse(file, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// parse reads and checks a scenario as written: ${dur:D} and ${sec:D} resolved at scale 1.
func parse(file string, data []byte) (*Scenario, error) {
	s, err := parseRaw(file, data)
	if err != nil {
		return nil, err
	}
	s.resolveAllTimes(1)
	return s, nil
}

// parseRaw reads and checks a scenario, leaving ${dur:D} and ${sec:D} in place.
func parseRaw(file string, data []byte) (*Scenario, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty file; a scenario needs at least name, title, concept, processes, steps and expect")
		}
		return nil, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	s := &Scenario{File: file, lines: map[string]int{}, src: data}
	d := yamlx.Decoder{Name: "the scenario", Lines: s.lines, FollowAliases: true, UniqueKeys: true}
	if err := d.Decode(doc.Content[0], s); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// at returns an error located at the line of the field path (or of its closest
// parent that has one).
func (s *Scenario) at(path, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	p := path
	for p != "" {
		if line, ok := s.lines[p]; ok {
			return &yamlx.Error{Line: line, Msg: path + ": " + msg}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	if path == "" {
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %s", path, msg)
}

func (s *Scenario) check() error {
	if s.Name == "" {
		return s.at("", "missing key name: give the scenario an id like idle-reset")
	}
	if !validName.MatchString(s.Name) {
		return s.at("name", "%q: use a-z, 0-9 and '-'", s.Name)
	}
	if base := strings.TrimSuffix(filepath.Base(s.File), filepath.Ext(s.File)); strings.HasPrefix(s.File, "playbook/") && base != s.Name {
		return s.at("name", "%q differs from the file name %q", s.Name, base)
	}
	if strings.TrimSpace(s.Title) == "" {
		return s.at("", "missing key title: one line saying what happens")
	}
	if strings.TrimSpace(s.Concept) == "" {
		return s.at("", "missing key concept: the idea the story shows")
	}
	pol, err := s.loadPolicy()
	if err != nil {
		return err
	}
	s.pol = pol
	for name := range s.Files {
		if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
			return s.at("files."+name, "a file name is a plain name inside ${dir}")
		}
		if err := s.checkVars("files."+name, s.Files[name]); err != nil {
			return err
		}
	}
	for i, c := range s.Setup {
		for _, w := range c.argv() {
			if err := s.checkVars(fmt.Sprintf("setup[%d]", i), w); err != nil {
				return err
			}
		}
	}
	if len(s.Processes) == 0 {
		return s.at("", "missing key processes: the programs the story runs")
	}
	procs := map[string]*Process{}
	for i, p := range s.Processes {
		path := fmt.Sprintf("processes[%d]", i)
		if p.Name == "" {
			return s.at(path, "missing key name")
		}
		if !validName.MatchString(p.Name) {
			return s.at(path+".name", "%q: use a-z, 0-9 and '-'", p.Name)
		}
		if procs[p.Name] != nil {
			return s.at(path+".name", "%q is already the name of another process", p.Name)
		}
		procs[p.Name] = p
		if p.Side != "client" && p.Side != "server" {
			return s.at(path+".side", "%q is not client or server", p.Side)
		}
		switch {
		case p.Agent != "" && p.Command != nil:
			return s.at(path, "give agent or command, not both")
		case p.Agent == "" && p.Command == nil:
			return s.at(path, "missing key agent (a built-in agent: %s) or command (any program)", strings.Join(agent.KindNames(), ", "))
		case p.Agent != "" && agent.Kinds[p.Agent] == nil:
			return s.at(path+".agent", "unknown agent %q; known agents: %s", p.Agent, strings.Join(agent.KindNames(), ", "))
		case p.Command != nil && len(p.Args) > 0:
			return s.at(path+".args", "args are for agents; put a command's arguments in its list")
		}
		for j, a := range p.Args {
			if err := s.checkVars(fmt.Sprintf("%s.args[%d]", path, j), a); err != nil {
				return err
			}
		}
		if p.Command != nil {
			for _, w := range p.Command.argv() {
				if err := s.checkVars(path+".command", w); err != nil {
					return err
				}
			}
		}
	}
	if len(s.Steps) == 0 {
		return s.at("", "missing key steps: what happens, in order")
	}
	started := map[string]bool{}
	cur := s.pol // the policy as the steps change it
	for i, st := range s.Steps {
		if err := s.checkStep(fmt.Sprintf("steps[%d]", i), st, procs, started, &cur); err != nil {
			return err
		}
	}
	for name := range procs {
		if !started[name] {
			return s.at(fmt.Sprintf("processes[%d]", s.procIndex(name)), "process %q is never started: add a step `start: %s`", name, name)
		}
	}
	if len(s.Expect) == 0 {
		return s.at("", "missing key expect: what must have happened, or the story proves nothing")
	}
	for i, e := range s.Expect {
		if err := s.checkExpect(fmt.Sprintf("expect[%d]", i), e, procs); err != nil {
			return err
		}
	}
	return s.checkVariants()
}

func (s *Scenario) procIndex(name string) int {
	for i, p := range s.Processes {
		if p.Name == name {
			return i
		}
	}
	return -1
}

func (s *Scenario) checkStep(path string, st *Step, procs map[string]*Process, started map[string]bool, cur *policy.Policy) error {
	var actions []string
	add := func(set bool, name string) {
		if set {
			actions = append(actions, name)
		}
	}
	add(len(st.Start) > 0, "start")
	add(st.Wait != nil, "wait")
	add(st.Idle != nil, "idle")
	add(st.Send != nil, "send")
	add(len(st.CloseStdin) > 0, "close_stdin")
	add(len(st.WaitExit) > 0, "wait_exit")
	add(len(st.Kill) > 0, "kill")
	add(st.Blackhole != "", "blackhole")
	add(st.Restore != "", "restore")
	add(st.Flush, "flush")
	add(len(st.Set) > 0, "set")
	add(st.Note != "", "note")
	switch {
	case len(actions) == 0 && st.At == nil:
		return s.at(path, "a step needs one action: start, wait, idle, send, close_stdin, wait_exit, kill, blackhole, restore, flush, set or note")
	case len(actions) > 1:
		return s.at(path, "one action per step, got %s", strings.Join(actions, " and "))
	}
	if st.Timeout != nil && len(st.WaitExit) == 0 {
		return s.at(path+".timeout", "timeout goes with wait_exit")
	}
	if st.Signal != "" {
		if len(st.Kill) == 0 {
			return s.at(path+".signal", "signal goes with kill")
		}
		if _, ok := signals[st.Signal]; !ok {
			return s.at(path+".signal", "%q is not one of TERM, KILL, INT, HUP, STOP, CONT", st.Signal)
		}
	}
	need := func(key string, names []string, mustStart bool) error {
		for _, n := range names {
			p := procs[n]
			if p == nil {
				return s.at(path+"."+key, "no process named %q", n)
			}
			if mustStart && !started[n] {
				return s.at(path+"."+key, "process %q is not started by an earlier step", n)
			}
		}
		return nil
	}
	for _, n := range st.Start {
		if started[n] {
			return s.at(path+".start", "process %q is started twice", n)
		}
	}
	if err := need("start", st.Start, false); err != nil {
		return err
	}
	for _, n := range st.Start {
		started[n] = true
	}
	if st.Send != nil {
		if st.Send.To == "" {
			return s.at(path+".send", "missing key to: the process whose stdin gets the text")
		}
		if err := need("send.to", []string{st.Send.To}, true); err != nil {
			return err
		}
		if !procs[st.Send.To].Stdin {
			return s.at(path+".send.to", "process %q has no stdin pipe: add `stdin: true` to it", st.Send.To)
		}
	}
	if err := need("close_stdin", st.CloseStdin, true); err != nil {
		return err
	}
	for _, n := range st.CloseStdin {
		if !procs[n].Stdin {
			return s.at(path+".close_stdin", "process %q has no stdin pipe: add `stdin: true` to it", n)
		}
	}
	if err := need("wait_exit", st.WaitExit, true); err != nil {
		return err
	}
	if err := need("kill", st.Kill, true); err != nil {
		return err
	}
	for _, side := range []struct{ key, v string }{{"blackhole", st.Blackhole}, {"restore", st.Restore}} {
		if side.v != "" && side.v != "client" && side.v != "server" {
			return s.at(path+"."+side.key, "%q is not client or server", side.v)
		}
	}
	if len(st.Set) > 0 {
		p := *cur
		for _, kv := range st.Set {
			if err := p.Set(kv.Key, kv.Value); err != nil {
				return yamlx.Errorf(kv.Line, "%s.set: %v", path, err)
			}
		}
		if p.Capacity != cur.Capacity || p.NAT.Enabled != cur.NAT.Enabled {
			return s.at(path+".set", "capacity and nat are fixed while the gateway runs; set them in policy")
		}
		*cur = p // later steps see the changed policy
	}
	return nil
}

func (s *Scenario) checkExpect(path string, e *Expect, procs map[string]*Process) error {
	var kinds []string
	add := func(set bool, name string) {
		if set {
			kinds = append(kinds, name)
		}
	}
	add(len(e.Outcome) > 0, "outcome")
	add(e.Event != "", "event")
	add(e.Gateway != "", "gateway")
	add(e.Exit != nil, "exit")
	add(e.Output != "" || e.OutputLacks != "", "output")
	add(e.Running != nil, "running")
	switch {
	case len(kinds) == 0:
		return s.at(path, "an expectation needs one of outcome, event, gateway, exit, output, output_lacks or running")
	case len(kinds) > 1:
		return s.at(path, "one expectation per entry, got %s", strings.Join(kinds, " and "))
	}
	kind := kinds[0]
	counted := e.Count != nil || e.Min != nil || e.Max != nil
	if kind == "gateway" {
		if e.Of != "" {
			return s.at(path+".of", "a gateway expectation counts what the gateway saw; drop of")
		}
		if !slices.Contains(GatewayCounters, e.Gateway) {
			return s.at(path+".gateway", "unknown counter %q; known counters: %s", e.Gateway, strings.Join(GatewayCounters, ", "))
		}
		if !counted {
			return s.at(path, "say how many: count, min or max")
		}
	} else {
		if e.Of == "" {
			return s.at(path, "missing key of: the process the expectation is about")
		}
		if len(e.Port) > 0 {
			return s.at(path+".port", "port filters gateway counters only")
		}
		name, conn, _ := strings.Cut(e.Of, "/")
		p := procs[name]
		if p == nil {
			return s.at(path+".of", "no process named %q", name)
		}
		if (kind == "outcome" || kind == "event") && p.Agent == "" {
			return s.at(path+".of", "%q is not a built-in agent: only agents report %ss; check its exit or output", name, kind)
		}
		if conn != "" && kind != "outcome" && kind != "event" {
			return s.at(path+".of", "a connection (%s) has outcomes and events; name the process alone for %s", e.Of, kind)
		}
		if counted && kind != "outcome" && kind != "event" {
			return s.at(path, "count, min and max go with outcome, event or gateway")
		}
	}
	if e.At != nil && kind != "outcome" {
		return s.at(path+".at", "at bounds when outcomes came; it goes with outcome")
	}
	if e.Err != "" && kind != "event" {
		return s.at(path+".err", "err filters events; it goes with event")
	}
	for i, o := range e.Outcome {
		if !slices.Contains(agent.OutcomeNames(), o) {
			return s.at(fmt.Sprintf("%s.outcome[%d]", path, i), "unknown outcome %q; known outcomes: %s", o, strings.Join(agent.OutcomeNames(), ", "))
		}
	}
	if kind == "event" && !slices.Contains(agent.EventNames(), e.Event) {
		return s.at(path+".event", "unknown event %q; known events: %s", e.Event, strings.Join(agent.EventNames(), ", "))
	}
	for i, port := range e.Port {
		if port < 1 || port > 65535 {
			return s.at(fmt.Sprintf("%s.port[%d]", path, i), "%d is not a port", port)
		}
	}
	for _, n := range []struct {
		key string
		v   *int
	}{{"count", e.Count}, {"min", e.Min}, {"max", e.Max}} {
		if n.v != nil && *n.v < 0 {
			return s.at(path+"."+n.key, "must be 0 or more")
		}
	}
	if e.Min != nil && e.Max != nil && *e.Min > *e.Max {
		return s.at(path+".min", "min %d is above max %d", *e.Min, *e.Max)
	}
	if e.Count != nil && (e.Min != nil || e.Max != nil) {
		return s.at(path+".count", "give count alone, or min and/or max")
	}
	return nil
}

var varRef = regexp.MustCompile(`\$\{([^}]*)\}`)

func (s *Scenario) checkVars(path, text string) error {
	for _, m := range varRef.FindAllStringSubmatch(text, -1) {
		if ok, err := checkTimeVar(m[1]); ok {
			if err != nil {
				return s.at(path, "%v", err)
			}
			continue
		}
		if !slices.Contains(knownVars, m[1]) {
			vars := append([]string(nil), knownVars...)
			sort.Strings(vars)
			return s.at(path, "unknown variable ${%s}; known variables: ${%s}, and ${dur:D} / ${sec:D} for a duration D", m[1], strings.Join(vars, "}, ${"))
		}
	}
	return nil
}

// expand replaces ${name} by vars[name]; other text, $x and $(...) included, stays.
func expand(text string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(text, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// expandAll returns words with their variables expanded, in a new slice.
func expandAll(words []string, vars map[string]string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = expand(w, vars)
	}
	return out
}

// Policy is the policy the gateway starts with.
func (s *Scenario) Policy() policy.Policy {
	p := s.pol
	p.NAT.Outside = slices.Clone(p.NAT.Outside)
	return p
}
