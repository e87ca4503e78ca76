package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
)

// playbook holds the built-in scenario files.
//
//go:embed playbook/*.yaml
var playbook embed.FS

var (
	playbookOnce sync.Once
	playbookList []*Scenario
	playbookErr  error
)

// Playbook returns the built-in scenarios, sorted by their order prefix in the
// playbook (the `order` of playbookOrder), then by name.
func Playbook() ([]*Scenario, error) {
	playbookOnce.Do(func() {
		files, err := fs.Glob(playbook, "playbook/*.yaml")
		if err != nil {
			playbookErr = err
			return
		}
		for _, f := range files {
			b, err := playbook.ReadFile(f)
			if err != nil {
				playbookErr = err
				return
			}
			s, err := Parse(f, b)
			if err != nil {
				playbookErr = fmt.Errorf("built-in scenario: %w", err)
				return
			}
			playbookList = append(playbookList, s)
		}
		sort.SliceStable(playbookList, func(i, j int) bool {
			return rank(playbookList[i].Name) < rank(playbookList[j].Name)
		})
	})
	return playbookList, playbookErr
}

// playbookOrder is the order of the stories in the playbook (docs/playbook.md).
var playbookOrder = []string{
	"idle-drop", "idle-reset", "tcp-keepalive-saves", "keepalive-too-slow", "heartbeat-saves",
	"dead-peer", "http-pool-stale", "table-full-lru", "nat-remap", "upstream-pool-thrash",
	"time-wait", "gateway-reboot", "udp-timeout", "refresh-needs-data", "reset-both-on-expire",
	"per-client-limit", "keepalive-false-alarm", "keepalive-fills-table", "ssh-idle-session",
	"nginx-upstream-stale", "grpc-too-many-pings", "slow-answer", "half-close-forgotten",
	"user-timeout-vs-keepalive", "netns-sysctl", "keepalive-stops-at-proxy", "server-dead-sessions",
}

func rank(name string) int {
	for i, n := range playbookOrder {
		if n == name {
			return i
		}
	}
	return len(playbookOrder)
}

// Runs returns what `scenario run --all` plays: every story of the playbook, each followed
// by its variants (NAME:VARIANT).
func Runs() ([]*Scenario, error) {
	list, err := Playbook()
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	for _, s := range list {
		out = append(out, s)
		for _, name := range s.VariantNames() {
			v, err := s.Variant(name)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// Lookup finds a scenario by playbook name, or reads it from a file when arg names
// one (a path with a slash or a .yaml/.yml suffix); NAME:VARIANT (or FILE:VARIANT) is
// one of its variants.
func Lookup(arg string) (*Scenario, error) {
	if i := strings.LastIndexByte(arg, ':'); i > 0 && validName.MatchString(arg[i+1:]) {
		if _, err := os.Stat(arg); err != nil { // a file may have a colon in its name
			s, err := lookup(arg[:i])
			if err != nil {
				return nil, err
			}
			return s.Variant(arg[i+1:])
		}
	}
	return lookup(arg)
}

func lookup(arg string) (*Scenario, error) {
	if strings.ContainsRune(arg, '/') || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("read scenario file: %w", err)
		}
		return Parse(arg, b)
	}
	list, err := Playbook()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range list {
		if s.Name == arg {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, &UnknownError{Name: arg, Known: names}
}

// UnknownError is a name that is neither a playbook scenario nor a file.
type UnknownError struct {
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("no scenario named %q; see `idlegate scenario list` (%s), or give a file path", e.Name, strings.Join(e.Known, ", "))
}

// Source returns the text of a built-in scenario file; for NAME:VARIANT, the story's file,
// which holds the variant.
func Source(name string) ([]byte, error) {
	name, _, _ = strings.Cut(name, ":")
	return playbook.ReadFile(path.Join("playbook", name+".yaml"))
}
