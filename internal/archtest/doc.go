// Package archtest holds no code: its test pins the shape of the house. The core
// (packet, conntrack, policy) imports nothing from the privileged shell and
// nothing that touches a file descriptor, a namespace or the wall clock, so it
// runs in tests as any user and offline over a capture in virtual time.
package archtest
