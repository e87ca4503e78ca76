// Package fidelity holds the differential test that keeps idlegate's connection
// tracking what Linux's nf_conntrack is, where the linux-conntrack profile says so:
// the same traffic, from real kernel sockets (and a raw-socket client for the
// segments a socket never sends), crosses a kernel router with nftables conntrack and
// a lab with the linux-conntrack profile at the same moment, with the same shortened
// timeouts (the router's per-namespace nf_conntrack sysctls, the lab's policy), and
// the two event streams (conntrack -E, Engine.Subscribe) must agree state by state
// and in time. It runs as root in `make test` and never skips in CI; the package has
// no code outside its tests.
package fidelity
