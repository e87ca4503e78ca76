#!/usr/bin/env bash
# Installs what idlegate's demo, tests and scenarios need on a fresh Debian machine;
# idempotent, and silent when everything is present.
set -euo pipefail
if [ ! -e /dev/net/tun ]; then
	echo "deps: /dev/net/tun is missing; load the tun module (modprobe tun) or run in a VM that has it" >&2
fi
# Debian packages the tests and scenarios use. Nothing is installed when all are present.
#   iproute2        ip, for the namespace tests; ss, for server-dead-sessions
#   openssh-*       sshd and ssh for the ssh-idle-session scenario (real OpenSSH)
#   nginx, curl     the nginx-upstream-stale scenario (real nginx and a real client)
#   libnginx-mod-stream  nginx's stream (L4 proxy) module, for keepalive-stops-at-proxy
#   socat           the udp-timeout scenario's push servers and clients
#   iperf3, nftables  make bench: load generator and the kernel reference router's conntrack rule
#   iputils-ping    ping, as the README and `lab up` suggest for a first try
#   postgresql      PostgreSQL server and psql, redis-server (with redis-cli), python3-requests,
#   python3-psycopg2, python3-redis: the real applications `idlegate advise` is checked
#                   against (cmd/idlegate/advise_apps_test.go); /usr/bin/python3 imports them
#   haproxy         haproxy -c checks the HAProxy lines `idlegate advise` prints
#   prometheus      promtool, with which a gateway test checks /metrics (`promtool check metrics`)
#   chromium        headless, for the report package's real-browser test (it loads the
#                   HTML reports offline and checks their DOM and a screenshot)
#   conntrack       conntrack -E / -D in the kernel router of the differential test (fidelity/)
#   docker.io       the wedge's docker test: dockerd and the docker CLI (a private daemon per test)
#   podman          the wedge's podman test (rootful, offline, a private configuration)
#   util-linux      unshare and nsenter, for the wedge's pid: test
want=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || want+=("$2"); }
need ip iproute2
need sshd openssh-server
need ssh openssh-client
need ssh-keygen openssh-client
need nginx nginx
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || want+=(libnginx-mod-stream)
need curl curl
need socat socat
need iperf3 iperf3
need nft nftables
need ping iputils-ping
need psql postgresql
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || want+=(postgresql)
need redis-server redis-server
need redis-cli redis-server
need haproxy haproxy
# Python modules for Debian's own interpreter (a pyenv or venv python3 earlier in PATH
# does not see them).
pymod() { /usr/bin/python3 -c "import $1" >/dev/null 2>&1 || want+=("$2"); }
if [ -x /usr/bin/python3 ]; then
	pymod requests python3-requests
	pymod psycopg2 python3-psycopg2
	pymod redis python3-redis
else
	want+=(python3 python3-requests python3-psycopg2 python3-redis)
fi
need promtool prometheus
need chromium chromium
need conntrack conntrack
need dockerd docker.io
need docker docker.io
need podman podman
need unshare util-linux
need nsenter util-linux
if [ ${#want[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${want[*]}; run as root to install them with apt-get" >&2
		exit 0
	fi
	mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
	echo "deps: installing ${want[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# The scenarios and tests start sshd, nginx, PostgreSQL and Redis themselves, inside
	# lab namespaces with data of their own: keep the packages' own services from starting
	# in the root namespace (Debian's policy-rc.d convention), unless the machine already
	# has a policy of its own.
	rcd=/usr/sbin/policy-rc.d
	ours=false
	if [ ! -e "$rcd" ]; then
		printf '#!/bin/sh\n# idlegate deps.sh: do not start services while installing\nexit 101\n' >"$rcd"
		chmod 755 "$rcd"
		ours=true
	fi
	trap '[ "$ours" = true ] && rm -f "$rcd"' EXIT
	apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
