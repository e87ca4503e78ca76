// Package bench is the system benchmark behind `make bench`: idlegate's lab
// against a kernel router with nftables conntrack, on the same machine, with
// the same address plan and MTU.
//
// One run, driven by bench/cmd/benchrun:
//  1. bring up the lab (gateway.StartLab, in this process) and the kernel
//     topology (UpKernel: PREFIX-client -> PREFIX-router -> PREFIX-server);
//  2. start an iperf3 server and an rr server (bench/rr) in each server namespace;
//  3. for each round, for each test, run the test on both paths, alternating
//     which path goes first: iperf3 TCP 1 and 4 streams, iperf3 UDP with
//     64-byte payloads at full rate, rr request/response, a flow flood;
//  4. print one table of medians with the ratio idlegate/kernel per line, and
//     the environment;
//  5. stop every process, remove every namespace, also on SIGINT/SIGTERM.
//
// Traffic never leaves the namespaces the run creates.
package bench
