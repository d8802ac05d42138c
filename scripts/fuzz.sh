#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZTIME each (default 10s).
#
#   scripts/fuzz.sh                 all packages
#   scripts/fuzz.sh ./protocol/...  only these packages
#
# `go test -fuzz` takes one target per invocation, so the targets are found by
# grepping `^func Fuzz` in each package's *_test.go files and run one at a time.
# A target in a file built only with the integration tag is run with
# -tags integration. New failing inputs land in the package's testdata/fuzz/,
# which is committed. Every target runs even if an earlier one fails; the
# script exits non-zero if any failed.
set -euo pipefail

cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./...)
fi

# -tags integration so packages whose only tests are integration-tagged are
# listed too; -e so a package that does not compile yet is still listed (its
# fuzz run then fails and is reported).
mapfile -t dirs < <("$GO" list -e -tags integration -f '{{.Dir}}' "${pkgs[@]}" 2>/dev/null | sort -u)

ran=0
failed=()
for dir in "${dirs[@]}"; do
	[ -n "$dir" ] || continue
	shopt -s nullglob
	files=("$dir"/*_test.go)
	shopt -u nullglob
	for file in "${files[@]}"; do
		names=$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file")
		[ -n "$names" ] || continue
		tags=()
		if grep -E '^//go:build ' "$file" | grep -qE '(^|[^!A-Za-z0-9_])integration([^A-Za-z0-9_]|$)'; then
			tags=(-tags integration)
		fi
		rel="./${dir#"$PWD"/}"
		[ "$dir" = "$PWD" ] && rel=.
		for name in $names; do
			echo "=== fuzz $rel $name ($FUZZTIME)"
			ran=$((ran + 1))
			if ! "$GO" test "${tags[@]}" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$rel"; then
				failed+=("$rel $name")
			fi
		done
	done
done

if [ "$ran" -eq 0 ]; then
	echo "fuzz: no Fuzz targets found"
	exit 0
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $ran targets FAILED:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: all $ran targets ok"
