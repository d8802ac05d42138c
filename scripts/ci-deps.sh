#!/usr/bin/env bash
# Installs the Debian packages the tests need (CI runs this on a fresh machine;
# nothing installed by hand survives). Add packages to PACKAGES below, e.g.
# chromium for browser tests, etcd-server for the kube-apiserver harness.
# apt is skipped entirely when every package is already installed.
set -euo pipefail

PACKAGES="busybox-static ca-certificates chromium curl ethtool etcd-server iproute2 jq make nftables"

missing=()
for pkg in $PACKAGES; do
	# dpkg -s also succeeds for removed-but-not-purged packages; check Status.
	if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "ci-deps: all installed: $PACKAGES"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo -n)
	else
		echo "ci-deps: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	fi
fi

echo "ci-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
