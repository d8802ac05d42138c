#!/usr/bin/env bash
# Builds the Kubernetes API server and controller manager the tests run
# against, from the Go module proxy (internal/tools/kube is a module of its
# own, so k8s.io/kubernetes stays out of the project's go.mod), into a
# directory the machine keeps between runs. A cold build takes about 10
# minutes on 2 cores; with the Go build cache, seconds. Prints the directory.
#
#   OUTPOST_KUBE_BIN  where the binaries go (default: the user cache dir)
set -euo pipefail

cd "$(dirname "$0")/.."
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' internal/tools/kube/go.mod)
dir=${OUTPOST_KUBE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost/kube-$version}
mkdir -p "$dir"

# The version the servers report (a module build has no git tree to take it from).
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitVersion=$version"
# The stamp names what the binary was built from: the version, the flags and
# the tool module's go.sum by content (a fresh clone's go.sum is newer than
# any binary, so its time says nothing).
sum=$(sha256sum internal/tools/kube/go.sum | cut -d' ' -f1)
for cmd in kube-apiserver kube-controller-manager; do
	stamp="$dir/$cmd.built"
	if [ -x "$dir/$cmd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version $ldflags $sum" ]; then
		continue
	fi
	echo "kube: building $cmd $version into $dir (about 10 minutes cold)" >&2
	(cd internal/tools/kube && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$cmd.new" "k8s.io/kubernetes/cmd/$cmd")
	mv "$dir/$cmd.new" "$dir/$cmd"
	echo "$version $ldflags $sum" > "$stamp"
done
echo "$dir"
