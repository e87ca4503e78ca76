package policy

import "strings"

// KernelDifference is one key of a policy whose value is not what Linux's
// nf_conntrack does on its own, with no ruleset: the linux-conntrack profile.
type KernelDifference struct {
	Key    string `json:"key"`
	Value  string `json:"value"`  // the policy's
	Kernel string `json:"kernel"` // the kernel's
	// Why is set where the value is Default's and Default departs from the kernel on
	// purpose.
	Why string `json:"why,omitempty"`
}

// defaultWhy says why Default departs from the kernel: it models a stateful
// firewall, not a bare conntrack.
var defaultWhy = map[string]string{
	"orphan":  "a firewall's forward chain accepts `ct state new` for SYNs only; the kernel alone picks a mid-stream packet up (nf_conntrack_tcp_loose=1)",
	"invalid": "a firewall drops `ct state invalid`; the kernel alone lets invalid packets pass untracked",
}

// KernelDifferences lists the keys of p whose values differ from the linux-conntrack
// profile's, in the order of the YAML document; NAT's other keys, the capacity (a
// property of the machine) and verdict_events are left out. For Default it is orphan
// and invalid, each with its reason.
func (p Policy) KernelDifferences() []KernelDifference {
	kernel := map[string]string{}
	k, _ := ProfilePolicy("linux-conntrack")
	for _, kv := range k.KeyValues() {
		kernel[kv[0]] = kv[1]
	}
	def := map[string]string{}
	for _, kv := range Default().KeyValues() {
		def[kv[0]] = kv[1]
	}
	var out []KernelDifference
	for _, kv := range p.KeyValues() {
		key, v := kv[0], kv[1]
		if key == "capacity" || strings.HasPrefix(key, "nat.") && key != "nat.enabled" {
			continue
		}
		if kv, ok := kernel[key]; ok && kv != v {
			x := KernelDifference{Key: key, Value: v, Kernel: kv}
			if def[key] == v {
				x.Why = defaultWhy[key]
			}
			out = append(out, x)
		}
	}
	return out
}
