package agent

import (
	"strconv"
	"strings"
	"time"
)

// textOps are the pattern ops whose argument is text, never a duration.
var textOps = map[string]bool{"send": true, "write": true, "await": true, "call": true, "shut": true}

// ScaleArgs returns an agent's flags with every span of time multiplied by f, for a story
// played slower (a scenario's time_scale variant): each flag value that is a Go duration
// with a unit (`5s`, `1500ms`), each duration step of a --pattern (`idle:5s`, `hold:8s`)
// and each rate (`4/s`, `30/m`, written back per minute). Counts, addresses and text stay as
// they are. args is not changed.
func ScaleArgs(args []string, f float64) []string {
	out := make([]string, len(args))
	for i, a := range args {
		name, val, eq := strings.Cut(a, "=")
		switch {
		case eq && strings.HasPrefix(name, "-"):
			out[i] = name + "=" + scaleValue(strings.TrimLeft(name, "-"), val, f)
		case strings.HasPrefix(a, "-"):
			out[i] = a
		case i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "="):
			out[i] = scaleValue(strings.TrimLeft(args[i-1], "-"), a, f)
		default:
			out[i] = scaleValue("", a, f)
		}
	}
	return out
}

// scaleValue scales the value of flag name (without dashes; "" when unknown).
func scaleValue(name, v string, f float64) string {
	if name == "pattern" {
		items := strings.Split(v, ",")
		for i, it := range items {
			op, arg, ok := strings.Cut(it, ":")
			if ok && !textOps[strings.TrimSpace(op)] {
				if d, ok := ScaleDuration(arg, f); ok {
					items[i] = op + ":" + d
				}
			}
		}
		return strings.Join(items, ",")
	}
	if d, ok := ScaleDuration(v, f); ok {
		return d
	}
	if num, unit, ok := strings.Cut(v, "/"); ok && (unit == "s" || unit == "m") {
		if r, err := strconv.ParseFloat(num, 64); err == nil && r > 0 {
			perMin := r
			if unit == "s" {
				perMin *= 60
			}
			return strconv.FormatFloat(perMin/f, 'g', 6, 64) + "/m"
		}
	}
	return v
}

// ScaleDuration multiplies the Go duration s by f, rounded to the millisecond, and writes
// it back as Go does (`18s`, `1m30s`, `1.5s`); ok is false when s is not a duration with a
// unit (a count such as `3` stays a count).
func ScaleDuration(s string, f float64) (string, bool) {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "hmsuµn") {
		return "", false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return "", false
	}
	return (time.Duration(float64(d) * f)).Round(time.Millisecond).String(), true
}
