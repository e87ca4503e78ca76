package lab

import (
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/idlegate/idlegate/tun"
)

// Errors callers branch on with errors.Is. Each message names the fix.
var (
	ErrNotRoot   = errors.New("the lab needs root to create network namespaces and TUN devices: run idlegate as root")
	ErrInUse     = errors.New("the lab is already running: run `idlegate lab down --name NAME` or pick another --name")
	ErrNoSuchLab = errors.New("no such lab: start one with `idlegate lab up`")
	ErrBadName   = fmt.Errorf("a lab name is 1 to %d characters of a-z, 0-9 and '-' and starts with a letter or digit: pick another --name", MaxNameLen)
)

// CheckHost returns ErrNotRoot or tun.ErrNoTUN unless this machine can run a lab:
// the process is root and /dev/net/tun exists.
func CheckHost() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return tun.ErrNoTUN
	}
	return nil
}

// inUseError is ErrInUse with the lab's name and the live pid in the message.
type inUseError struct {
	name  string
	pid   int
	wedge bool // a wedge of that name is wanted
}

func (e *inUseError) Error() string {
	if e.wedge {
		return fmt.Sprintf("%q is already running (pid %d); take it out with `idlegate wedge down --name %s` (or `lab down` for a lab), or pick another --name", e.name, e.pid, e.name)
	}
	return fmt.Sprintf("lab %q is already running (pid %d); run `idlegate lab down --name %s` or pick another --name", e.name, e.pid, e.name)
}

func (e *inUseError) Unwrap() error { return ErrInUse }

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// CheckName returns an error matching ErrBadName unless name can name a lab.
func CheckName(name string) error {
	if len(name) > MaxNameLen || !validName.MatchString(name) {
		return fmt.Errorf("lab name %q: %w", name, ErrBadName)
	}
	return nil
}

// noSuchLabError is ErrNoSuchLab said about one lab, in one sentence.
type noSuchLabError struct{ name string }

func (e *noSuchLabError) Error() string {
	return fmt.Sprintf("no lab named %q is running; start one with `idlegate lab up --name %s`", e.name, e.name)
}

func (e *noSuchLabError) Unwrap() error { return ErrNoSuchLab }

// NoSuchLab is the error for a lab name with nothing behind it; it matches ErrNoSuchLab.
func NoSuchLab(name string) error { return &noSuchLabError{name} }
