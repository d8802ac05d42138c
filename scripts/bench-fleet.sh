#!/usr/bin/env bash
# make bench-fleet: a fresh outpost-server (data in a temporary directory)
# and outpost-sim against it, the report into bench-fleet/ (report.json,
# report.html, server.log). The preset is moderate, to end cleanly in a few
# minutes on a 2-core machine; issue 13's standard scenario (100,000 async
# and 10,000 standard devices) is not simulated yet (see sim/doc.go).
# Override with the environment: DEVICES, FREQ, DURATION, COMMANDS,
# CHANGES, CAPTURE, BIND, TUNNEL_ADDR, METRICS_ADDR, OUT.
set -euo pipefail

DEVICES=${DEVICES:-5000}
FREQ=${FREQ:-60}
DURATION=${DURATION:-60s}
COMMANDS=${COMMANDS:-5}
CHANGES=${CHANGES:-0.2}
CAPTURE=${CAPTURE:-docker-5.json}
BIND=${BIND:-127.0.0.1:19443}
TUNNEL_ADDR=${TUNNEL_ADDR:-127.0.0.1:19444}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:19490}
OUT=${OUT:-bench-fleet}
BIN=${BIN:-bin}
PASSWORD=bench-fleet-password-1

mkdir -p "$OUT"
data=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid"
		wait "$server_pid" || true
	fi
	rm -rf "$data"
}
trap cleanup EXIT

OUTPOST_ADMIN_PASSWORD=$PASSWORD "$BIN/outpost-server" --data "$data" --bind "$BIND" \
	--tunnel-addr "$TUNNEL_ADDR" --metrics-addr "$METRICS_ADDR" >"$OUT/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	grep -q 'msg="outpost server listening"' "$OUT/server.log" && break
	kill -0 "$server_pid" 2>/dev/null || { echo "bench-fleet: the server did not start:"; cat "$OUT/server.log"; exit 1; }
	sleep 0.1
done

OUTPOST_SIM_PASSWORD=$PASSWORD "$BIN/outpost-sim" -server "https://$BIND" \
	-devices "$DEVICES" -freq "$FREQ" -duration "$DURATION" -commands-per-sec "$COMMANDS" \
	-changes-per-hour "$CHANGES" -capture "$CAPTURE" \
	-server-pid "$server_pid" -metrics "http://$METRICS_ADDR/metrics" \
	-json "$OUT/report.json" -html "$OUT/report.html"
echo "bench-fleet: report in $OUT/report.json and $OUT/report.html"
