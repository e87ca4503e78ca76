package policy

import (
	"fmt"
	"time"
)

// The catalogue of advice items: every value in them comes from the one Keepalive that
// Advise chose, and each item's Config is what a user pastes, as the tool takes it. The
// claims about what a tool does by default are checked against the real applications by
// cmd/idlegate's TestAdviceApps (Debian 12: OpenSSH 9.2, PostgreSQL 15, Redis 7.0,
// nginx 1.22, curl 7.88, requests 2.28, psycopg2 2.9, redis-py 4.3) and, for the
// libraries Debian does not ship, against their sources (grpc-go 1.85, go-redis 9.23,
// HikariCP, Jedis, Go 1.26 database/sql).

const (
	grpcMinClientTime = 10 * time.Second // grpc-go internal.KeepaliveMinPingTime: a smaller ClientParameters.Time is raised to it
	grpcMinServerTime = time.Second      // grpc-go internal.KeepaliveMinServerPingTime
	hikariMinKeep     = 30 * time.Second // HikariCP: keepaliveTime below 30000 ms is disabled
	hikariMaxLifetime = 30 * time.Minute // HikariCP maxLifetime default, 1800000 ms
	goDefaultIdle     = 15 * time.Second // Go net.Dialer and net.ListenConfig KeepAlive default (idle and interval)
	hiredisIdle       = 15 * time.Second // redis-cli: REDIS_CLI_KEEPALIVE_INTERVAL, idle 15 s, then every 5 s
	nginxKeepalive    = 75 * time.Second // nginx keepalive_timeout default (client side)
	nginxUpstreamKeep = 60 * time.Second // nginx upstream keepalive_timeout default
)

// appItems writes every tool's settings for timeout t from k.
func appItems(a *Advice, t time.Duration, k Keepalive) []AdviceItem {
	probes := a.ProbesCount
	I, V, C, U := secs(k.Idle), secs(k.Interval), k.Count, k.UserTimeout().Milliseconds()
	T := formatDuration(t)
	goKA := fmt.Sprintf("net.KeepAliveConfig{Enable: true, Idle: %d * time.Second, Interval: %d * time.Second, Count: %d}", I, V, C)
	var items []AdviceItem
	add := func(it AdviceItem) { items = append(items, it) }

	// Linux.
	add(AdviceItem{
		ID: "linux-sysctl", App: "Linux", Tool: "sysctl: every socket with SO_KEEPALIVE on", Side: EndEither,
		Where: "sysctl -w, or a file in /etc/sysctl.d/, in the network namespace the program runs in " +
			"(a container or network namespace starts from the kernel defaults 7200, 75, 9, whatever the host has)",
		Config: fmt.Sprintf("net.ipv4.tcp_keepalive_time = %d\nnet.ipv4.tcp_keepalive_intvl = %d\nnet.ipv4.tcp_keepalive_probes = %d", I, V, C),
		Works:  probes,
		Protects: "every connection in that namespace whose socket has SO_KEEPALIVE on and no TCP_KEEPIDLE of its own, IPv4 and IPv6: " +
			"libpq (keepalives=1 is its default), ssh and sshd (TCPKeepAlive yes), Jedis, pgjdbc tcpKeepAlive=true, redis-py socket_keepalive=True, " +
			"nginx so_keepalive=on and proxy_socket_keepalive, HAProxy option clitcpka/srvtcpka",
		OtherSide: "the peer's kernel answers the probes by itself; nothing to set there, but it notices a dead path only through keepalive of its own",
		Note:      "sockets without SO_KEEPALIVE (most HTTP clients, redis-py by default) send nothing whatever these say",
	})
	add(AdviceItem{
		ID: "linux-setsockopt", App: "Linux", Tool: "socket options (C, or any language with setsockopt)", Side: EndEither,
		Where: "after socket(), on the connecting socket or on the listening one (accepted sockets inherit them)",
		Config: fmt.Sprintf("int on = 1, idle = %d, intvl = %d, cnt = %d;\nunsigned int user_timeout = %d; /* ms */\n"+
			"setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);\n"+
			"setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);\n"+
			"setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);\n"+
			"setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);\n"+
			"setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);", I, V, C, U),
		Works:     probes,
		Protects:  "this connection, from the end that sets them, whatever the namespace's sysctls say",
		OtherSide: "the peer's kernel answers the probes; nothing to set there",
		Note: fmt.Sprintf("TCP_USER_TIMEOUT makes unacknowledged data (a write into a black hole) fail after %d ms instead of about %s; "+
			"the kernel rejects 0 for TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT", U, formatDuration(linuxRetries2)),
	})

	// Go.
	goNote := fmt.Sprintf("Go's default (idle 15s, interval 15s, 9 probes) probes too late for a box that forgets after %s", T)
	if t > 2*goDefaultIdle {
		goNote = "Go's default (idle 15s, interval 15s, 9 probes) already keeps connections through this box; these settings notice a dead path sooner"
	}
	add(AdviceItem{
		ID: "go-dialer", App: "Go", Tool: "net.Dialer: any Go TCP client (database drivers, Redis, HTTP)", Side: EndClient,
		Where: "Go 1.23 or later; imports net, syscall, time and golang.org/x/sys/unix (for TCP_USER_TIMEOUT)",
		Config: fmt.Sprintf("dialer := &net.Dialer{\n"+
			"\tKeepAliveConfig: %s,\n"+
			"\tControl: func(_, _ string, c syscall.RawConn) error { // TCP_USER_TIMEOUT (Linux)\n"+
			"\t\tvar err error\n"+
			"\t\tif cerr := c.Control(func(fd uintptr) {\n"+
			"\t\t\terr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, %d)\n"+
			"\t\t}); cerr != nil {\n"+
			"\t\t\treturn cerr\n"+
			"\t\t}\n"+
			"\t\treturn err\n"+
			"\t},\n"+
			"}", goKA, U),
		Works:     probes,
		Protects:  "every connection this dialer opens, idle or waiting for a slow answer",
		OtherSide: "the server's kernel answers the probes; nothing to set there",
		Note:      goNote + fmt.Sprintf("; before Go 1.23, KeepAlive: %d * time.Second sets idle and interval both", I),
	})
	add(AdviceItem{
		ID: "go-http-client", App: "Go", Tool: "net/http client (Transport)", Side: EndClient,
		Where:  "http.Client{Transport: transport}; dialer is the net.Dialer above",
		Config: fmt.Sprintf("transport := &http.Transport{\n\tDialContext:     dialer.DialContext,\n\tIdleConnTimeout: %d * time.Second,\n}", I),
		Works:  true,
		Protects: fmt.Sprintf("the client's pool: IdleConnTimeout (90s by default) closes a connection idle for %ds, before the box forgets it, even on a box that ignores probes; "+
			"the dialer's probes keep a connection that waits for a slow answer", I),
		OtherSide: "the server sees idle connections closed (FIN); nothing to set there",
	})
	add(AdviceItem{
		ID: "go-http-server", App: "Go", Tool: "net/http server (listener keepalive)", Side: EndServer,
		Where: "instead of http.ListenAndServe; ctx, addr and handler are yours",
		Config: fmt.Sprintf("lc := net.ListenConfig{KeepAliveConfig: %s}\n"+
			"ln, err := lc.Listen(ctx, \"tcp\", addr)\n"+
			"if err != nil {\n\treturn err\n}\n"+
			"err = (&http.Server{Handler: handler}).Serve(ln)", goKA),
		Works:     probes,
		Protects:  fmt.Sprintf("clients' idle keep-alive connections, from the server end: every accepted connection probes after %ds of silence", I),
		OtherSide: "clients see nothing and keep reusing their connections; their kernels answer the probes",
		Note: "Go's default for accepted connections is idle 15s, interval 15s; keep http.Server.IdleTimeout above the clients' own idle timeouts: " +
			"a server that closes idle connections first races clients that reuse them",
	})
	add(AdviceItem{
		ID: "go-database-sql", App: "Go", Tool: "database/sql pool", Side: EndClient,
		Where:  "after sql.Open",
		Config: fmt.Sprintf("db.SetConnMaxIdleTime(%d * time.Second)", I),
		Works:  true,
		Protects: fmt.Sprintf("the pool: a connection idle for %ds is closed (the cleaner runs at most once a second), before the box forgets it; "+
			"without it an idle connection stays in the pool forever", I),
		OtherSide: "the database sees a clean disconnect; nothing to set there",
		Note:      "the driver dials its connections itself: give it the net.Dialer above where it lets you (pgx: ConnConfig.DialFunc), so that a connection in use is probed too",
	})

	// PostgreSQL and JDBC.
	add(AdviceItem{
		ID: "libpq", App: "PostgreSQL and JDBC", Tool: "libpq connection string: psql, pg_dump, and drivers built on libpq", Side: EndClient,
		Where:     "the connection string, after host=... dbname=... (or the same keys in a postgresql:// URI's query)",
		Config:    fmt.Sprintf("keepalives=1 keepalives_idle=%d keepalives_interval=%d keepalives_count=%d tcp_user_timeout=%d", I, V, C, U),
		Works:     probes,
		Protects:  "this client's connection, idle or waiting for a slow query",
		OtherSide: "the server's kernel answers the probes; the server learns of a dead client only through its own tcp_keepalives_* (PostgreSQL server, below)",
		Note: "keepalives=1 is already libpq's default, on the kernel's timers: without keepalives_idle the namespace's net.ipv4.tcp_keepalive_time (7200s by default) decides; " +
			"tcp_user_timeout is in ms (libpq 12 or later)",
	})
	add(AdviceItem{
		ID: "psycopg", App: "PostgreSQL and JDBC", Tool: "psycopg2 and psycopg 3 (Python)", Side: EndClient,
		Where:     "keyword arguments of psycopg2.connect() or psycopg.connect(), after host=..., dbname=...",
		Config:    fmt.Sprintf("keepalives=1, keepalives_idle=%d, keepalives_interval=%d, keepalives_count=%d, tcp_user_timeout=%d", I, V, C, U),
		Works:     probes,
		Protects:  "this client's connection, idle or waiting for a slow query",
		OtherSide: "the server's kernel answers the probes; nothing to set there",
		Note:      "these are libpq's parameters: the connection string above works as the dsn too",
	})
	add(AdviceItem{
		ID: "postgresql-server", App: "PostgreSQL and JDBC", Tool: "PostgreSQL server (postgresql.conf)", Side: EndServer,
		Where:     "postgresql.conf (or ALTER SYSTEM SET), then reload",
		Config:    fmt.Sprintf("tcp_keepalives_idle = %d\ntcp_keepalives_interval = %d\ntcp_keepalives_count = %d\ntcp_user_timeout = %d", I, V, C, U),
		Works:     probes,
		Protects:  "every client's connection, from the server end, whatever the clients set: a session idle in psql or a pool stays known to the box",
		OtherSide: "clients' kernels answer the probes; a client still learns of a dead path only through its own keepalive or a failed query",
		Note:      "0, the default, means the kernel's tcp_keepalive_* of the server's namespace; tcp_user_timeout is in ms (PostgreSQL 12 or later)",
	})
	add(AdviceItem{
		ID: "pgjdbc", App: "PostgreSQL and JDBC", Tool: "PostgreSQL JDBC driver (pgjdbc)", Side: EndClient,
		Where:     "a connection property, or the JDBC URL: jdbc:postgresql://host/db?tcpKeepAlive=true",
		Config:    "tcpKeepAlive=true",
		Works:     probes,
		Protects:  "this client's connections, on the kernel's timers",
		OtherSide: "nothing to set on the server",
		Note:      "pgjdbc only turns SO_KEEPALIVE on (it is off by default) and cannot set the idle time: the namespace's sysctls decide (7200s by default, far too late)",
		Needs:     []string{"linux-sysctl"},
	})
	hik := AdviceItem{
		ID: "hikaricp", App: "PostgreSQL and JDBC", Tool: "HikariCP (JDBC pool)", Side: EndClient,
		Where:     "HikariConfig setters, hikari.properties, or Spring's spring.datasource.hikari.keepalive-time / max-lifetime",
		Works:     true,
		Protects:  "idle pooled connections: HikariCP validates each one every keepaliveTime (Connection.isValid or connectionTestQuery), which every box counts as data",
		OtherSide: "the database answers the validation; nothing to set there",
	}
	if k.Idle >= hikariMinKeep {
		keep := min(k.Idle, hikariMaxLifetime-5*time.Minute)
		hik.Config = fmt.Sprintf("keepaliveTime=%d\nmaxLifetime=%d", keep.Milliseconds(), hikariMaxLifetime.Milliseconds())
		hik.Note = "keepaliveTime must stay below maxLifetime (1800000 ms, its default), and at 30000 ms or above: otherwise HikariCP disables it with only a WARN line"
	} else {
		hik.Works = false
		hik.Note = fmt.Sprintf("this box needs a ping every %ds, and HikariCP disables a keepaliveTime below 30000 ms (a WARN line only); "+
			"idleTimeout only retires connections above minimumIdle: use pgjdbc tcpKeepAlive=true with the sysctls", I)
		hik.Needs = []string{"pgjdbc", "linux-sysctl"}
	}
	add(hik)

	// Redis.
	add(AdviceItem{
		ID: "redis-server", App: "Redis", Tool: "Redis server (redis.conf)", Side: EndServer,
		Where:  fmt.Sprintf("redis.conf, or CONFIG SET tcp-keepalive %d", I),
		Config: fmt.Sprintf("tcp-keepalive %d", I),
		Works:  probes,
		Protects: fmt.Sprintf("every client's connection, from the server end: Redis probes after %ds of silence, then every %ds, 3 times, "+
			"and so also drops a dead client after about %ds", I, max(I/3, 1), I+3*max(I/3, 1)),
		OtherSide: "clients see nothing: redis-cli, redis-py and Jedis sessions survive without settings of their own",
		Note: "the default is 300s; redis-cli turns keepalive on by itself with a fixed 15s idle (hiredis), enough only for a box above 20s, " +
			"so its sessions behind this box rely on the server; redis-cli prints \"Error: Connection reset by peer\" when the box reset one",
	})
	add(AdviceItem{
		ID: "redis-py", App: "Redis", Tool: "redis-py (Python)", Side: EndClient,
		Where: "keyword arguments of redis.Redis() or redis.ConnectionPool(); import socket",
		Config: fmt.Sprintf("socket_keepalive=True, socket_keepalive_options={socket.TCP_KEEPIDLE: %d, socket.TCP_KEEPINTVL: %d, "+
			"socket.TCP_KEEPCNT: %d, socket.TCP_USER_TIMEOUT: %d}", I, V, C, U),
		Works:     probes,
		Protects:  "this client's connections, pooled ones included",
		OtherSide: "the server's kernel answers the probes; nothing to set there (or set the server's tcp-keepalive instead)",
		Note: "socket_keepalive=True alone is useless behind this box: without socket_keepalive_options it runs on the namespace's sysctls, 7200s by default; " +
			"a connection the box reset fails with ConnectionError(\"Error while reading from HOST:6379 : (104, 'Connection reset by peer')\")",
	})
	add(AdviceItem{
		ID: "go-redis", App: "Redis", Tool: "go-redis v9", Side: EndClient,
		Where:  "fields of redis.Options; dialer is the net.Dialer above (Go)",
		Config: fmt.Sprintf("Dialer:          dialer.DialContext,\nConnMaxIdleTime: %d * time.Second,", I),
		Works:  true,
		Protects: fmt.Sprintf("the pool: a connection idle for %ds or more is closed before it is reused, even on a box that ignores probes; "+
			"the dialer's probes keep connections in use (a blocking BLPOP) alive", I),
		OtherSide: "the server sees idle connections closed; nothing to set there",
		Note:      "go-redis 9.23's own dialer probes after 30s idle, 5s apart, 3 times; ConnMaxIdleTime defaults to 30 min",
	})
	add(AdviceItem{
		ID: "jedis", App: "Redis", Tool: "Jedis (JedisPool, JedisPooled)", Side: EndClient,
		Where:  "the pool's JedisPoolConfig (Apache commons-pool2 2.10 or later); import java.time.Duration",
		Config: fmt.Sprintf("JedisPoolConfig poolConfig = new JedisPoolConfig(); // testWhileIdle is on in JedisPoolConfig\npoolConfig.setTimeBetweenEvictionRuns(Duration.ofSeconds(%d));", I),
		Works:  true,
		Protects: fmt.Sprintf("idle pooled connections: every %ds the evictor PINGs each idle connection (data, counted by every box) "+
			"and closes those idle longer than minEvictableIdleTime (60s by default)", I),
		OtherSide: "the server answers PING; nothing to set there",
		Note:      "Jedis turns SO_KEEPALIVE on for every connection, so the sysctls also reach connections in use; a plain GenericObjectPoolConfig has testWhileIdle off: setTestWhileIdle(true)",
	})

	// HTTP clients.
	add(AdviceItem{
		ID: "python-requests", App: "HTTP clients", Tool: "Python requests (urllib3 socket_options)", Side: EndClient,
		Where: "Python; then call session.get/post instead of requests.get/post",
		Config: fmt.Sprintf(`import socket
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection


class KeepaliveAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = HTTPConnection.default_socket_options + [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, %d),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, %d),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, %d),
            (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, %d),
        ]
        super().init_poolmanager(*args, **kwargs)


session = requests.Session()
session.mount("http://", KeepaliveAdapter())
session.mount("https://", KeepaliveAdapter())`, I, V, C, U),
		Works:     probes,
		Protects:  "the session's pooled connections, and requests waiting for a slow answer",
		OtherSide: "the server's kernel answers the probes; nothing to set there",
		Note: "requests (2.28) sets no keepalive and does not retry a request whose pooled connection the box reset, GET or POST: it raises ConnectionError " +
			"(\"Connection aborted.\", ConnectionResetError(104, ...)); through a black hole it hangs. urllib3's PoolManager takes the same socket_options",
	})
	curlN := halfBelow(t, k)
	add(AdviceItem{
		ID: "curl", App: "HTTP clients", Tool: "curl", Side: EndClient,
		Where:     "the command line",
		Config:    fmt.Sprintf("--keepalive-time %d", curlN),
		Works:     probes,
		Protects:  "curl's connections: one reused between the URLs of a command, and one waiting for a slow answer",
		OtherSide: "the server's kernel answers the probes; nothing to set there",
		Note: fmt.Sprintf("curl sets idle and interval both to this (at most half the box's %s, so a lost probe is retried in time; its default is 60s) "+
			"and cannot set TCP_USER_TIMEOUT: bound a hang with --max-time. Without it curl hides the failure: on a reused connection the box reset "+
			"it retries on a new one (\"Connection died, retrying a fresh connect\", shown only with -v) and exits 0, GET and POST alike", T),
	})

	// nginx.
	add(AdviceItem{
		ID: "nginx-server", App: "nginx", Tool: "nginx facing clients (server {})", Side: EndServer,
		Where:  "the listen directive of the server {} (your own address and port instead of 80; on the first listen of that address:port)",
		Config: fmt.Sprintf("listen 80 so_keepalive=%d:%d:%d;", I, V, C),
		Works:  probes,
		Protects: fmt.Sprintf("clients' idle keep-alive connections to nginx, from the server end: probes after %ds of silence, "+
			"as long as nginx keeps them (keepalive_timeout, %s by default)", I, formatDuration(nginxKeepalive)),
		OtherSide: "clients see nothing and keep reusing their connections; their kernels answer the probes",
		Note:      fmt.Sprintf("or let nginx close idle client connections first: keepalive_timeout %ds; clients must then reopen, and one that writes as nginx closes gets an error", I),
	})
	add(AdviceItem{
		ID: "nginx-upstream", App: "nginx", Tool: "nginx as a proxy (upstream {})", Side: EndClient,
		Where: "inside your upstream {} block, next to its server lines; the location that proxies to it needs " +
			"proxy_http_version 1.1; and proxy_set_header Connection \"\";",
		Config: fmt.Sprintf("keepalive 32;\nkeepalive_timeout %ds;", I),
		Works:  true,
		Protects: fmt.Sprintf("nginx's pooled connections to its backends: nginx closes one idle for %ds (%s by default), before the box forgets it",
			I, formatDuration(nginxUpstreamKeep)),
		OtherSide: "backends see idle connections closed; nothing to set there",
		Note: "without it, nginx retries a request whose pooled connection the box reset on a new connection and only logs it (\"Connection reset by peer\"), " +
			"and a black hole ends in 504 after proxy_read_timeout (60s by default); proxy_socket_keepalive on; adds SO_KEEPALIVE on the sysctls' timers",
	})

	// HAProxy.
	add(AdviceItem{
		ID: "haproxy", App: "HAProxy", Tool: "HAProxy 2.2 or later", Side: EndEither,
		Where: "the defaults section, or a frontend (clitcpka) and a backend (srvtcpka)",
		Config: fmt.Sprintf("option clitcpka\nclitcpka-idle %ds\nclitcpka-intvl %ds\nclitcpka-cnt %d\noption srvtcpka\nsrvtcpka-idle %ds\nsrvtcpka-intvl %ds\nsrvtcpka-cnt %d",
			I, V, C, I, V, C),
		Works:     probes,
		Protects:  "both legs: clients' connections to HAProxy (clitcpka) and HAProxy's connections to servers (srvtcpka)",
		OtherSide: "clients and servers answer the probes in their kernels; nothing to set there",
		Note: fmt.Sprintf("or end idle sessions first: timeout client and timeout server (timeout tunnel for WebSocket) of %ds; "+
			"HAProxy then closes an idle session itself and both ends see the close", I),
	})

	// OpenSSH.
	sshdN := halfBelow(t, k)
	add(AdviceItem{
		ID: "ssh-client", App: "OpenSSH", Tool: "ssh client (ssh_config)", Side: EndClient,
		Where:  "~/.ssh/config under Host * (or the host), or ssh -o ServerAliveInterval=...",
		Config: fmt.Sprintf("ServerAliveInterval %d\nServerAliveCountMax %d", I, C),
		Works:  true,
		Protects: fmt.Sprintf("the session: after %ds without data from the server, ssh sends a request inside the encrypted channel and sshd answers; "+
			"both are data, so they count on every box", I),
		OtherSide: "sshd answers by itself; nothing to set there",
		Note: fmt.Sprintf("ssh gives up after %d unanswered requests (\"Timeout, server ... not responding\"), which also ends a black-hole hang; "+
			"TCPKeepAlive yes (the default) only switches on the kernel's timers (the sysctls, 7200s by default). "+
			"Without it, a session the box reset ends at the next keystroke with \"client_loop: send disconnect: Broken pipe\" (OpenSSH 9.2), exit 255", C),
	})
	add(AdviceItem{
		ID: "sshd", App: "OpenSSH", Tool: "sshd (sshd_config)", Side: EndServer,
		Where:     "sshd_config, then reload sshd",
		Config:    fmt.Sprintf("ClientAliveInterval %d\nClientAliveCountMax %d", sshdN, C),
		Works:     true,
		Protects:  fmt.Sprintf("every session, from the server end, whatever the clients set: a request after %ds without data from the client", 2*sshdN),
		OtherSide: "ssh clients answer by themselves; nothing to set there",
		Note: fmt.Sprintf("sshd (9.2) sends its first request only after twice ClientAliveInterval of silence (it compares whole seconds strictly), "+
			"so the interval is below half the box's %s; it ends a session after %d unanswered requests; TCPKeepAlive yes only switches on the kernel's timers", T, C),
	})

	// gRPC.
	grpcC := AdviceItem{
		ID: "grpc-go-client", App: "gRPC", Tool: "grpc-go client", Side: EndClient,
		Where:     "an option of grpc.NewClient; import google.golang.org/grpc/keepalive",
		Works:     true,
		Protects:  fmt.Sprintf("the client's connection, idle or with calls waiting: an HTTP/2 PING after %ds of silence, which every box counts as data", I),
		OtherSide: "the server answers the PINGs itself, but only as often as its EnforcementPolicy allows (grpc-go server, next)",
		Needs:     []string{"grpc-go-server"},
	}
	if k.Idle >= grpcMinClientTime {
		grpcC.Config = fmt.Sprintf("grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: %d * time.Second, Timeout: %d * time.Second, PermitWithoutStream: true})",
			I, V*int64(C))
		grpcC.Note = fmt.Sprintf("set the server's EnforcementPolicy with it (MinTime at most %ds, PermitWithoutStream true): its defaults (MinTime 5 min, no pings without calls) "+
			"answer a client that pings more often with GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\", which fails its calls and makes it double Time", I)
	} else {
		grpcC.Works = false
		grpcC.Note = fmt.Sprintf("grpc-go raises a ClientParameters.Time below 10s to 10s, too late for a box that forgets after %s: let the server ping instead (ServerParameters.Time goes down to 1s)", T)
	}
	add(grpcC)
	minTime := max((k.Idle / 2).Truncate(time.Second), time.Second)
	add(AdviceItem{
		ID: "grpc-go-server", App: "gRPC", Tool: "grpc-go server", Side: EndServer,
		Where: "options of grpc.NewServer; import google.golang.org/grpc/keepalive",
		Config: fmt.Sprintf("grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: %d * time.Second, PermitWithoutStream: true}),\n"+
			"grpc.KeepaliveParams(keepalive.ServerParameters{Time: %d * time.Second, Timeout: %d * time.Second}),", secs(minTime), max(I, secs(grpcMinServerTime)), V*int64(C)),
		Works: true,
		Protects: fmt.Sprintf("every client's connection, from the server end: an HTTP/2 PING after %ds of silence (ServerParameters.Time); "+
			"EnforcementPolicy lets clients that ping every %ds or more keep pinging, without a call open", I, secs(minTime)),
		OtherSide: "clients answer the PINGs themselves; a client pinging more often than MinTime gets GOAWAY too_many_pings",
	})
	return items
}

// halfBelow is the largest whole second N with 2N < t, at most the advice's idle: for
// knobs whose effect comes at twice their value (curl --keepalive-time sets idle and
// interval both, so a lost probe is retried at 2N; sshd 9.2 sends its first
// ClientAlive request after 2N).
func halfBelow(t time.Duration, k Keepalive) int64 {
	n := (t - 1) / (2 * time.Second) // largest whole N with 2N < t
	return max(min(int64(n), secs(k.Idle)), 1)
}
