#!/usr/bin/env bash
# make run: the server on its embedded defaults (data in ./data) plus a local
# async agent on this machine's Docker engine. See internal/tools/runlocal.
# It runs the built tool, not `go run`: go run exits 1 on Ctrl-C whatever the
# tool does, and make would report it as an error.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bin/runlocal "$@"
