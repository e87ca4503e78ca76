#!/usr/bin/env bash
# Installs what idlegate's demo and tests need on a fresh Debian machine; idempotent.
set -euo pipefail
if [ ! -e /dev/net/tun ]; then
	echo "deps: /dev/net/tun is missing; load the tun module (modprobe tun) or run in a VM that has it" >&2
fi
# Debian packages the tests and scenarios use. Nothing is installed when all are present.
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
need ip iproute2
if [ ${#want[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${want[*]}; run as root to install them with apt-get" >&2
		exit 0
	fi
	echo "deps: installing ${want[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
