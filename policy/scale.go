package policy

import (
	"fmt"
	"math"
	"time"
)

// MinScaledTimeout is the shortest timeout Scale produces: the table keeps
// last-seen times at millisecond resolution.
const MinScaledTimeout = time.Millisecond

// CheckScale reports whether f is a usable time scale: finite and above 0. A scale
// below 1 shrinks timeouts (0.01 turns 350 s into 3.5 s), above 1 stretches them.
func CheckScale(f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return fmt.Errorf("time scale %v must be a number above 0, e.g. 0.01 to turn 350s into 3.5s", f)
	}
	if f > 1000 {
		return fmt.Errorf("time scale %v is above 1000; it multiplies every timeout", f)
	}
	return nil
}

// ScaleDuration multiplies d by f, rounded to the millisecond, at least
// MinScaledTimeout. f == 1 returns d unchanged.
func ScaleDuration(d time.Duration, f float64) time.Duration {
	if f == 1 {
		return d
	}
	s := time.Duration(math.Round(float64(d)*f/float64(time.Millisecond))) * time.Millisecond
	return max(s, MinScaledTimeout)
}

// Scale returns p with every idle timeout multiplied by f (see ScaleDuration); nothing
// else changes. f must pass CheckScale.
func (p Policy) Scale(f float64) (Policy, error) {
	if err := CheckScale(f); err != nil {
		return p, err
	}
	q := p.clone()
	for _, d := range q.durations() {
		*d = Duration(ScaleDuration(time.Duration(*d), f))
	}
	return q, nil
}

// durations points at every timeout of p.
func (p *Policy) durations() []*Duration {
	ds := make([]*Duration, len(timeoutFields))
	for i, f := range timeoutFields {
		ds[i] = f.field(&p.Timeouts)
	}
	return ds
}

// FormatScaled prints a real duration as it runs under scale f: "3.5s (real 350s)",
// or just "350s" when f is 1.
func FormatScaled(real time.Duration, f float64) string {
	if f == 1 || f == 0 {
		return formatDuration(real)
	}
	return formatDuration(ScaleDuration(real, f)) + " (real " + formatDuration(real) + ")"
}

// FormatUnscaled prints a duration measured under scale f with the real duration it
// stands for: "3.5s (real 350s)", or just "3.5s" when f is 1.
func FormatUnscaled(scaled time.Duration, f float64) string {
	if f == 1 || f == 0 {
		return formatDuration(scaled)
	}
	real := time.Duration(math.Round(float64(scaled)/f/float64(time.Millisecond))) * time.Millisecond
	return formatDuration(scaled) + " (real " + formatDuration(real) + ")"
}

// FormatDuration prints whole seconds as "350s", whole days as "5d", else Go's form.
func FormatDuration(d time.Duration) string { return formatDuration(d) }
