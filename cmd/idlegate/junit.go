package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/idlegate/idlegate/scenarios"
)

// createJUnit creates the file of `scenario run --junit FILE` before any scenario
// plays, so that a path that cannot be written is said at once, not after the run;
// nil for "".
func createJUnit(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usagef("--junit %s: %v", path, errors.Unwrap(err))
	}
	return f, nil
}

// writeJUnit writes the run's JUnit XML to f, if not nil, and closes it.
func writeJUnit(f *os.File, r *scenarios.Results) error {
	if f == nil {
		return nil
	}
	host, _ := os.Hostname()
	err := r.WriteJUnit(f, host)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--junit %s: %w", f.Name(), err)
	}
	return nil
}

// removeJUnit removes the file of a run that played nothing.
func removeJUnit(f *os.File) error {
	if f == nil {
		return nil
	}
	f.Close()
	return os.Remove(f.Name())
}
