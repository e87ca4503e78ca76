package policy

import "testing"

// Point 6 of issue 15: the default policy says where it is not the kernel, and why.
func TestKernelDifferences(t *testing.T) {
	d := Default().KernelDifferences()
	if len(d) != 2 || d[0].Key != "orphan" || d[0].Value != "drop" || d[0].Kernel != "pickup" || d[0].Why == "" ||
		d[1].Key != "invalid" || d[1].Value != "drop" || d[1].Kernel != "accept" || d[1].Why == "" {
		t.Fatalf("Default differs from the kernel in %+v; want orphan and invalid, with reasons", d)
	}
	if d := ProfileFidelity(t, "linux-conntrack").KernelDifferences(); len(d) != 0 {
		t.Errorf("linux-conntrack differs from itself: %+v", d)
	}
	p := ProfileFidelity(t, "aws-nat-gateway")
	found := false
	for _, x := range p.KernelDifferences() {
		if x.Key == "timeouts.tcp.established" && x.Value == "350s" && x.Kernel == "5d" {
			found = true
		}
		if x.Key == "capacity" || x.Key == "nat.outside" {
			t.Errorf("lists %s", x.Key)
		}
	}
	if !found {
		t.Errorf("aws-nat-gateway: %+v", p.KernelDifferences())
	}
}
