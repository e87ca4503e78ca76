// Package control is idlegate's control API as its users see it: the JSON a running
// lab's gateway serves over its unix socket, the Filter that picks connections and
// events (the CLI's conntrack-style flags, the API's query parameters, and the
// engine's policy.Filter are one object), and a Client with which any Go program
// drives a running lab. The idlegate CLI is such a program. A wedge (idlegate
// wedge: the gateway between two namespaces that existed already) serves the same
// API; its Lab has Kind KindWedge and a Wedge.
//
// The socket is a file, /run/idlegate/LAB/control.sock, mode 0600 in a directory of
// mode 0700: a client needs root, and reaches it from any network namespace that
// shares the mount namespace (the lab's own included).
//
//	c, err := control.Dial("pool")
//	if err != nil { ... }
//	conns, err := c.Conns(ctx, control.Filter{Proto: conntrack.ProtoTCP, DPort: 5432})
//	n, err := c.Expire(ctx, control.Filter{ID: conns[0].ID}) // fast-forward its idle timeout
//
// # Routes
//
// Every answer is JSON unless said otherwise; every error, 404 and 405 included, is
// {"error": "one sentence"} with a 4xx or 5xx status. FILTER is the query parameters
// of a Filter (id, proto, src, dst, sport, dport, state, status, nat, event); the
// verbs that change connections refuse an empty one. The OpenAPI 3 document,
// OpenAPI below, describes each route; the gateway serves it too.
//
//	GET    /v1/lab                  the lab or wedge: name, pid, profile, time scale, policy (Lab)
//	GET    /v1/version              the gateway's build (Version)
//	GET    /v1/conntrack?FILTER     the table, like conntrack -L ([]Conn)
//	GET    /v1/conntrack/count?FILTER  how many connections match ({"count": n})
//	DELETE /v1/conntrack?FILTER     forget them now, like conntrack -D ({"deleted": n})
//	POST   /v1/conntrack/expire?FILTER  expire them now, as their idle timeout would ({"expired": n})
//	PATCH  /v1/conntrack?FILTER     {"timeout_s": 30}: their time left, like conntrack -U --timeout ({"updated": n})
//	POST   /v1/flush                forget every connection ({"flushed": n})
//	GET    /v1/events?FILTER        live events as NDJSON (Event) until the client hangs up; a
//	                                wedge's GONE and ATTACH go to every stream, whatever FILTER
//	GET    /v1/policy               the policy in force (policy.Policy; ?format=yaml for YAML)
//	POST   /v1/policy               {"set": ["timeouts.tcp.established=10s"]}, real units (PolicyView)
//	GET    /v1/pcap                 what is being recorded (PcapInfo)
//	POST   /v1/pcap?FILTER          {"path": "/tmp/x.pcapng", "force": false} starts, {"path": ""} stops (PcapAnswer)
//	GET    /v1/stats                every counter (Stats)
//	GET    /v1/openapi.json         the OpenAPI 3 document
//	GET    /metrics                 Prometheus metrics (text exposition format)
//
// The package is API: its names keep their meaning across versions, and a new field
// may appear in any answer.
package control
