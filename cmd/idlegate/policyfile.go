package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/idlegate/idlegate/policy"
)

// readPolicyFile loads a policy YAML file over base. The file is read here, in the
// CLI: the policy package itself never touches a file descriptor.
func readPolicyFile(base policy.Policy, path string) (policy.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("read policy: %w", err)
	}
	p, err := policy.LoadOver(base, bytes.NewReader(b))
	if err != nil {
		return base, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// loadPolicyFrom builds a policy from a built-in profile (or Linux's defaults when
// profile is ""), then the policy file over it, then --set overrides. Mistakes are
// usage errors.
func loadPolicyFrom(profile, config string, sets []string) (policy.Policy, error) {
	p := policy.Default()
	if profile != "" {
		pr, err := policy.LookupProfile(strings.TrimSpace(profile))
		if err != nil {
			return p, usagef("--profile: %v", err)
		}
		p = pr.Policy()
	}
	if config != "" {
		var err error
		if p, err = readPolicyFile(p, config); err != nil {
			return p, usageError{err}
		}
	}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, usagef("--set %q is not KEY=VALUE, e.g. --set timeouts.tcp.established=10s", kv)
		}
		if err := p.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return p, usageError{fmt.Errorf("--set %s: %w", kv, err)}
		}
	}
	return p, nil
}
