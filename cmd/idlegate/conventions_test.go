package main

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegate/idlegate/control"
)

// placeholder is what a flag's help may show for its value: an upper-case word such
// as NAME, FILE, KEY=VALUE.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*(=[A-Z][A-Z0-9_]*)?$`)

// TestFlagPlaceholders: every flag that takes a value shows a real placeholder in
// its help (--profile NAME), never a type (string) or a command name.
func TestFlagPlaceholders(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			id := c.CommandPath() + " --" + f.Name
			if name == "" || f.Name == "help" {
				return // a bool flag
			}
			if !placeholder.MatchString(name) {
				t.Errorf("%s shows %q for its value; want a placeholder such as NAME (backquote it in the usage)", id, name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRoot())
}

// TestExitCodesOfTheAPI: the control package's errors map to the documented codes.
func TestExitCodesOfTheAPI(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("dial: %w", control.ErrNotRunning), exitState},
		{fmt.Errorf("stream: %w", control.ErrStreamEnded), exitState},
		{fmt.Errorf("stat: %w", control.ErrPermission), exitEnv},
		{&control.Error{Status: 400, Message: "bad filter"}, exitUsage},
		{&control.Error{Status: 409, Message: "capacity cannot change"}, exitUsage},
		{&control.Error{Status: 500, Message: "broken"}, exitFailure},
		{errors.New("no connection matches id=9"), exitFailure},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestYAMLKeepsJSON: -o yaml has the keys, order and values of -o json.
func TestYAMLKeepsJSON(t *testing.T) {
	var b bytes.Buffer
	c := control.Conn{ID: 7, Proto: "icmp", Assured: true, TimeLeft: 1.5,
		Orig:  control.Tuple{Src: "198.18.0.2", Dst: "198.19.0.2", ICMP: &control.ICMP{Type: 8, ID: 3}},
		Reply: control.Tuple{Src: "198.19.0.2", Dst: "198.18.0.2", ICMP: &control.ICMP{ID: 3}},
		NAT:   "198.18.0.2:3 -> 198.19.0.1:1024"}
	if err := writeYAMLOut(&b, c); err != nil {
		t.Fatal(err)
	}
	y := b.String()
	for _, want := range []string{"id: 7\nproto: icmp\nassured: true\nunreplied: false\ntimeout_left_s: 1.5\n", "    type: 8\n", "nat: 198.18.0.2:3 -> 198.19.0.1:1024\n"} {
		if !strings.Contains(y, want) {
			t.Errorf("yaml lacks %q:\n%s", want, y)
		}
	}
}

// TestFormatEvent: events as ct events prints them, LOST included.
func TestFormatEvent(t *testing.T) {
	at := time.Date(2025, 1, 1, 12, 0, 3, 353000000, time.Local)
	orig := &control.Tuple{Src: "198.18.0.2", Dst: "198.19.0.2", SrcPort: 44336, DstPort: 7000}
	for _, c := range []struct {
		ev   control.Event
		want string
	}{
		{control.Event{Time: at, T: 3.353, Type: "DESTROY", ID: 4, Proto: "tcp", State: "ESTABLISHED", Orig: orig, Assured: true, Reason: "expired", Idle: 3, Timeout: 3},
			"12:00:03.353000   +3.353s [DESTROY] tcp  ESTABLISHED 198.18.0.2:44336 -> 198.19.0.2:7000 id=4 [ASSURED] reason=expired idle=3.0s timeout=3.0s"},
		{control.Event{Time: at, T: 1, Type: "UPDATE", ID: 4, Proto: "tcp", OldState: "SYN_SENT", State: "SYN_RECV", Orig: orig},
			"12:00:03.353000   +1.000s [UPDATE]  tcp  SYN_SENT->SYN_RECV 198.18.0.2:44336 -> 198.19.0.2:7000 id=4"},
		{control.Event{Time: at, T: 5, Type: "VERDICT", Proto: "tcp", Orig: orig, Verdict: "reset", Dir: "outbound", Reason: "orphan"},
			"12:00:03.353000   +5.000s [VERDICT] tcp  198.18.0.2:44336 -> 198.19.0.2:7000 verdict=reset (outbound orphan)"},
		{control.Event{Time: at, T: 9, Type: control.EventLost, Lost: 1234},
			"12:00:03.353000   +9.000s [LOST]    1234 events lost: this reader fell behind and the gateway dropped them"},
		{control.Event{Time: at, T: 12, Type: control.EventGone, Side: "B", Target: "docker:db", Message: "side B (docker:db) is gone: its network namespace went away"},
			"12:00:03.353000  +12.000s [GONE]    side B (docker:db) is gone: its network namespace went away"},
		{control.Event{Time: at, T: 14, Type: control.EventAttach, Side: "B", Target: "docker:db"},
			"12:00:03.353000  +14.000s [ATTACH]  side B (docker:db)"},
	} {
		if got := formatEvent(c.ev); got != c.want {
			t.Errorf("formatEvent:\n got %q\nwant %q", got, c.want)
		}
	}
}
