package scenarios

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/playbook.md from the scenario files")

const docPath = "../docs/playbook.md"

// TestPlaybookDoc keeps docs/playbook.md in step with the scenario files: the stories'
// sections are generated from their concept, story and fix. Rewrite it with
// `go test ./scenarios -run TestPlaybookDoc -update`.
func TestPlaybookDoc(t *testing.T) {
	var b bytes.Buffer
	if err := writePlaybookDoc(&b); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(docPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("%s is out of date with scenarios/playbook/*.yaml: run `go test ./scenarios -run TestPlaybookDoc -update`", docPath)
	}
	for _, word := range []string{"sysctl", "TCP_KEEPIDLE", "libpq", "ServerAliveInterval", "nginx", "Redis", "TIME_WAIT", "LRU", "HTTP keep-alive"} {
		if !strings.Contains(string(have), word) {
			t.Errorf("docs/playbook.md never mentions %s", word)
		}
	}
}

func writePlaybookDoc(w *bytes.Buffer) error {
	list, err := Playbook()
	if err != nil {
		return err
	}
	w.WriteString(docIntro)
	w.WriteString("\n## The stories\n\n| # | scenario | what happens |\n|---|---|---|\n")
	for i, s := range list {
		fmt.Fprintf(w, "| %d | [%s](#%s) | %s |\n", i+1, s.Name, s.Name, s.Title)
	}
	for i, s := range list {
		fmt.Fprintf(w, "\n### %s\n\n", s.Name)
		fmt.Fprintf(w, "**%d. %s**\n\n", i+1, s.Title)
		fmt.Fprintf(w, "```sh\nsudo idlegate scenario run %s\n```\n\n", s.Name)
		fmt.Fprintf(w, "**Concept.** %s\n\n", para(s.Concept))
		fmt.Fprintf(w, "**Policy.** %s\n\n", PolicySummary(s.Profile, s.Scale, s.Policy()))
		fmt.Fprintf(w, "**What to look at in the timeline.** %s\n\n", para(s.Story))
		w.WriteString("**Checked.**\n\n")
		for _, e := range s.Expect {
			line := "- " + e.String()
			if e.Why != "" {
				line += ": " + e.Why
			}
			w.WriteString(line + "\n")
		}
		fmt.Fprintf(w, "\n**The fix in real configuration.** %s\n", para(s.Fix))
		for _, v := range s.Variants {
			fmt.Fprintf(w, "\n**Variant `%s`** (`sudo idlegate scenario run %s:%s`): %s.\n", v.Name, s.Name, v.Name, para(v.Why))
		}
	}
	return nil
}

// para joins a YAML block's lines into one paragraph.
func para(s string) string { return strings.Join(strings.Fields(s), " ") }

const docIntro = "# The keepalive playbook\n" + `
Idle connections die in middleboxes: a NAT gateway, a load balancer or a firewall forgets a
connection that stayed quiet longer than its idle timeout, or evicts it from a full table,
and the next packet meets a RST, a black hole, or a new NAT port. The playbook tells each way
this happens, and each cure, as a story played with real kernel sockets and real programs
through idlegate's gateway, and checks that the story really happened.

` + "```sh" + `
idlegate scenario list                                  # the stories
sudo idlegate scenario run tcp-keepalive-saves          # one, with its timeline
sudo idlegate scenario run idle-drop --pcap drop.pcapng # and what crossed the gateway
sudo idlegate scenario run --all --parallel 8           # all of them and their variants
sudo idlegate scenario run tcp-keepalive-saves:scale    # one story, every time x6
sudo idlegate scenario run ./my-story.yaml -o json      # your own, as a JSON report
idlegate scenario show nat-remap > my-story.yaml        # a starting point
` + "```" + `

Timings are scaled to seconds: a box that forgets after 3 s stands for one that forgets after
350 s (AWS NAT Gateway) or 4 minutes (Azure), keepalive every second for keepalive every
minute. So that no story passes only because its timeouts are short, every story that idles
has a ` + "`scale`" + ` variant (` + "`NAME:scale`" + `, played by ` + "`scenario run --all`" + ` too) that plays it
again with every span of time multiplied, until the box's timeout and the quiet periods are
above 15 s, where Go turns TCP keepalive on by default. Each run builds a lab of its own (a
client and a server network namespace with the gateway between them, under a unique name,
so runs in parallel never collide), starts the story's processes, plays its steps and
removes everything on every exit path, Ctrl-C too.

## Three things called keepalive

- **HTTP keep-alive** (persistent connections) only means "do not close the connection after
  the response": the idle connection then waits in a pool, sending nothing. It is what gets
  killed, not what protects (http-pool-stale, upstream-pool-thrash, nginx-upstream-stale).
- **TCP keepalive** (SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) makes the
  kernel send an empty probe after TCP_KEEPIDLE of silence; the probe and its ACK refresh
  every box that counts packets. Its default idle time is 2 hours, set per network
  namespace, so a container starts at 2 hours whatever the host says (tcp-keepalive-saves,
  keepalive-too-slow, keepalive-false-alarm, keepalive-fills-table, slow-answer,
  half-close-forgotten, user-timeout-vs-keepalive, netns-sysctl). It protects one TCP
  connection: a proxy ends it (keepalive-stops-at-proxy), and a server needs its own to
  notice clients that vanished (server-dead-sessions).
- **An application heartbeat** (ping/pong in the protocol: ssh ServerAliveInterval, gRPC or
  HTTP/2 PING, WebSocket ping, AMQP heartbeat) is real data: it refreshes even boxes that
  ignore keepalive probes, and it tells the application that the peer is gone
  (heartbeat-saves, refresh-needs-data, dead-peer, ssh-idle-session). The other end may
  police it: a gRPC server answers pings faster than its enforcement policy allows with
  GOAWAY too_many_pings (grpc-too-many-pings).

The other concepts: **TIME_WAIT** (the closing side keeps a connection's ports for 2 MSL, and
every stateful box keeps an entry as long: time-wait), **LRU eviction** (a full table
sacrifices the least recently used entry, the idle long-lived one: table-full-lru), **NAT
mappings** (nat-remap, udp-timeout), and a box's reboot (gateway-reboot).

## What the real tools print, and the advice that cures them

The same idle connection dies two ways. A box that answers a forgotten flow with a RST
(orphan: reset; the AWS NAT gateway) makes the next request fail at once; a box that drops
it silently (orphan: drop; most firewalls, Azure LB) is a black hole: the request hangs with
nothing printed until the kernel stops retransmitting, about 15 minutes (tcp_retries2=15),
unless the client set TCP_USER_TIMEOUT. What unmodified Debian 12 tools print, checked by
cmd/idlegate's TestAdviceApps at box timeouts of 3, 5 and 8 s:

| tool | RST (orphan: reset) | black hole (orphan: drop) |
|---|---|---|
| psql 15 | "server closed the connection unexpectedly ... connection to server was lost", exit 2 | hangs; with the advice's tcp_user_timeout (7000 for an 8 s box) it ends after 7.4 s: "could not receive data from server: Connection timed out" |
| psycopg2 2.9 | OperationalError('server closed the connection unexpectedly ...') | hangs |
| ssh 9.2 | "client_loop: send disconnect: Broken pipe", exit 255 | hangs, nothing printed |
| redis-cli 7.0 | "Error: Connection reset by peer" | hangs |
| redis-py 4.3 | ConnectionError("Error while reading from HOST:6379 : (104, 'Connection reset by peer')"), also with socket_keepalive=True alone | hangs |
| requests 2.28 | ConnectionError(ProtocolError('Connection aborted.', ConnectionResetError(104, ...))); no method is retried | hangs |
| curl 7.88 | nothing: it retries on a new connection ("Connection died, retrying a fresh connect", only with -v) and exits 0, GET and POST alike | hangs |
| nginx 1.22 as a proxy | nothing for the client (200): it retries on a new upstream connection and logs "recv() failed (104: Connection reset by peer) while reading response header from upstream" | 504 after proxy_read_timeout |

A hidden retry is how such bugs stay hidden: curl and nginx mask the reset flavour, so an
application that works from the command line fails in production where the client is
requests, psql or a pool, or where the box drops instead of resetting.

` + "`idlegate advise`" + ` prints the cure for both ends of each of them (and for Go, gRPC, HikariCP,
Jedis, go-redis, HAProxy, the Linux sysctls and socket options), for a profile, a policy, or
a running lab (` + "`idlegate advise --name LAB`" + `); its JSON carries the same lines, and
TestAdviceApps pastes them into each real application and shows the connection surviving
three timeouts idle, with reset and with drop.

## Reading a run

Every run prints a timeline in three columns, with times in seconds since the story started:

- **client** and **server**: what the programs in each namespace did and saw. Built-in agents
  report ` + "`connect`, `send`, `recv`, `idle`, `shutdown` (a half-close), `keepalive` (the socket options the kernel holds), `heartbeat`, `ERROR op: ERRNO` and one `=> OUTCOME`" + ` per
  connection (survived, reset, timed-out, dead, hung, refused, closed, error); other programs'
  output lines are shown as ` + "`name: line`, their standard error as `name! line`" + `.
- **gateway**: the connection table's events (NEW, state changes, DESTROY with the reason:
  expired after idle D, evicted, closed when TIME_WAIT is over, flushed) and the verdicts that
  matter: keepalive probes and whether they refresh, packets of forgotten flows ("no entry for
  ..." and what the box did with them: dropped, RST, ICMP, picked up), refusals (table full,
  per-source limit). Connections are named by protocol and ports (the lab's addresses are
  fixed: client 198.18.0.2, server 198.19.0.2), NAT adds the outside port. Bursts of similar
  lines are folded ("... 17 more like that").

Then the gateway's counters, each expectation with what was seen, and one verdict line:
` + "`PASS name (8.4s): 5 of 5 expectations met`" + ` or ` + "`FAIL name (...): 1 of 4 expectations failed; first: ...`" + `.
` + "`-o json`" + ` gives the same as JSON (timeline rows, expectations, counters, processes), one shape for one
scenario or many, and ` + "`--junit FILE`" + ` writes JUnit XML that CI systems render: see [docs/ci.md](ci.md).
The exit status is 1 when any expectation failed, 2 for a bad scenario file or flag, 3 when
the machine cannot run a lab. ` + "`make test`" + ` plays the whole playbook and fails on any expectation.

## Writing a scenario

A scenario is a YAML file; ` + "`idlegate scenario run FILE`" + ` plays it. A mistake is refused
with the file, line and field: ` + "`story.yaml: line 12: steps[3]: unknown key \"blakhole\" in steps[3]; known keys: ...`" + `.

` + "```yaml" + `
name: my-story                  # a-z, 0-9, '-'
title: One line saying what happens
concept: The idea the story shows.
story: What to look at in the timeline.        # optional
fix: The cure in real configuration.           # optional
profile: aws-nat-gateway        # optional: a built-in middlebox profile to start from
scale: 0.01                     # optional: multiply every timeout (350s -> 3.5s)
policy:                         # optional: policy YAML as in a policy file (from: PROFILE works)
  timeouts:
    tcp: {established: 3s}
  orphan: reset
files:                          # optional: written into ${dir}, the run's temporary directory
  app.conf: |
    listen ${server4}:8080;
setup:                          # optional: commands run before the story, each must exit 0
  - [ssh-keygen, -q, -t, ed25519, -N, "", -f, "${dir}/key"]
  - {sh: "cat ${dir}/key.pub > ${dir}/authorized_keys"}
processes:
  - name: server
    side: server                # client or server namespace
    agent: tcp-echo-server      # a built-in agent (docs/agents.md) ...
    args: [--listen, "${server4}:7000"]
  - name: app
    side: client
    command: [my-client, --to, "${server4}:7000"]   # ... or any program ({sh: "..."} too)
    stdin: true                 # a pipe that send steps write to
steps:                          # one action per step, in order; at: waits until that time
  - start: server               # or a list: [a, b]
  - wait: 300ms
  - start: app
  - send: {to: app, text: "hello"}       # a line to its stdin
  - idle: 5s                    # wait, marked in the timeline
  - at: 6s
    blackhole: server           # its link goes down: everything to and from it vanishes
  - restore: server
  - flush: true                 # the gateway forgets every connection (a reboot)
  - set: {orphan: pickup, timeouts.tcp.established: 10s}   # change the policy live
  - kill: app                   # SIGTERM (signal: KILL|INT|HUP|STOP|CONT)
  - close_stdin: app
  - wait_exit: [app]            # until it exits, at most timeout (default 30s)
    timeout: 10s
  - note: text for the timeline
timeout: 60s                    # optional bound of the whole story
variants:                       # optional: the same story played again as NAME:VARIANT
  - name: scale
    time_scale: 6               # every span of time x6: policy, steps, at, agent flags,
    why: the box forgets after 18 s   # ${dur:D} and ${sec:D}
expect:
  - of: client                  # an agent (every connection) or agent/c1 (one connection)
    outcome: [reset, timed-out] # one of these; with count/min/max: how many connections
    at: {min: 5s, max: 8s}      # optional: when the results came
    why: shown when it fails
  - of: client
    event: error                # how many events of a kind (default: at least one)
    err: ECONNRESET
    count: 1
  - gateway: expired            # new, expired, evicted, closed, flushed, time_wait,
    port: [7000]                # keepalive_probes, table_full, orphans, pickups,
    min: 1                      # source_limit, resets; port: only those flows
  - of: app
    exit: 0                     # its exit code
  - of: app
    output: "status 200"        # printed (stdout or stderr); output_lacks: never printed
  - of: app
    running: true               # still running when the steps were done (hung)
` + "```" + `

Variables in files, setup, args and commands: ` + "`${dir}` `${lab}` `${client4}` `${server4}` `${client6}` `${server6}` `${nat4}` `${nat6}` `${bin}`" + `
(the idlegate binary), and for the times that real programs read, ` + "`${dur:2s}`" + ` (2s, or 12s in a
variant with time_scale 6, in whole seconds or milliseconds as nginx reads them) and
` + "`${sec:2s}`" + ` (2, or 12: seconds, for sleep, curl's --max-time, ssh's ServerAliveInterval,
/proc/sys); the agents' flags are scaled without them. Anything else (` + "`$HOME`, `$(...)`" + `) is
left to the shell. Processes run with HOME=${dir}, in a process group of their own; at the
end every one still running gets SIGTERM, then SIGKILL, and whatever is left in the lab's
namespaces is killed before they are removed.

Real software in the playbook comes from Debian packages that ` + "`deps.sh`" + ` installs: OpenSSH
(openssh-server, openssh-client), nginx (with its stream module, libnginx-mod-stream), curl,
socat and iproute2's ss; grpc-go is built into idlegate as the grpc-server and grpc-client agents;
the advice is checked against PostgreSQL, Redis, python3-requests, python3-psycopg2 and
python3-redis as well.
`
