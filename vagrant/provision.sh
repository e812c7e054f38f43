#!/usr/bin/env bash
# Installs everything hermes-netd's build and test suite need on a Debian or
# Ubuntu machine. The Vagrant VM and CI both run this script; it is idempotent
# and installs only what is missing.
set -euo pipefail

GO_MIN=1.26
GO_VERSION=${GO_VERSION:-1.26.8}

log() { printf 'provision: %s\n' "$*" >&2; }

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		log "must run as root (it installs packages)"
		exit 1
	fi
}

apt_install() {
	local missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	local have
	have=$(go env GOVERSION | sed 's/^go//')
	[ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | head -1)" = "$GO_MIN" ]
}

install_go() {
	export PATH=/usr/local/go/bin:$PATH
	go_ok && return 0
	log "installing Go $GO_VERSION into /usr/local/go"
	local arch
	arch=$(dpkg --print-architecture)
	curl -fsSL "https://go.dev/dl/go${GO_VERSION}.linux-${arch}.tar.gz" -o /tmp/go.tgz
	rm -rf /usr/local/go
	tar -C /usr/local -xzf /tmp/go.tgz
	rm -f /tmp/go.tgz
	ln -sf /usr/local/go/bin/go /usr/local/bin/go
}

install_node_deps() {
	# The end-to-end suite drives the official OpenAI Node SDK from npm.
	local dir
	dir=$(cd "$(dirname "$0")/.." && pwd)/internal/e2e/testdata/node
	[ -f "$dir/package.json" ] || return 0
	[ -d "$dir/node_modules/openai" ] && return 0
	log "installing the npm packages of the end-to-end suite"
	(cd "$dir" && npm install --no-audit --no-fund --silent)
}

need_root
apt_install ca-certificates curl git make gcc clang llvm libbpf-dev linux-libc-dev \
	iproute2 nftables conntrack python3 nodejs util-linux procps \
	wrk nghttp2-client
# The peer proxies `make bench` compares hermes-netd with (scenario 8).
apt_install mitmproxy sslsplit openssl
# Debian splits npm out of nodejs; other builds of nodejs (NodeSource) ship it
# and conflict with Debian's npm package, so ask for it only when it is absent.
command -v npm >/dev/null 2>&1 || apt_install npm
install_go
install_node_deps
log "done"
