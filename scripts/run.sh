#!/usr/bin/env bash
# make run: the server on its embedded defaults (data in ./data) plus a local
# async agent on this machine's Docker engine. See internal/tools/runlocal.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./internal/tools/runlocal "$@"
