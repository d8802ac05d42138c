#!/usr/bin/env bash
# make bench-fleet: a fresh outpost-server (data in a temporary directory)
# and outpost-sim against it, the report into bench-fleet/ (report.json,
# report.html, server.log). The preset is issue 13's standard scenario
# scaled to this machine: 5,000 async devices at 60 s, 1,000 standard
# devices polling every 5 s, 100 of them holding a tunnel, 10 of those
# carrying 5 requests a second, and an edge stack over 2,000 devices. Each
# connection costs a file in the server and one in the simulator, and each
# process may hold at most 20,000 here (the open-file hard limit): keep
# DEVICES + STANDARD + TUNNELS well under it. The full scenario (100,000
# and 10,000) does not fit (see sim/doc.go). It ends in about five minutes
# on a 2-core machine.
# Override with the environment: DEVICES, STANDARD, FREQ, POLL_FREQ,
# TUNNELS, BUSY_TUNNELS, TUNNEL_REQUESTS, STACK_GROUP, DURATION, RAMP, COMMANDS,
# CHANGES, CAPTURE, BIND, TUNNEL_ADDR, METRICS_ADDR, OUT.
set -euo pipefail

DEVICES=${DEVICES:-5000}
STANDARD=${STANDARD:-1000}
FREQ=${FREQ:-60}
POLL_FREQ=${POLL_FREQ:-5}
TUNNELS=${TUNNELS:-100}
BUSY_TUNNELS=${BUSY_TUNNELS:-10}
TUNNEL_REQUESTS=${TUNNEL_REQUESTS:-5}
STACK_GROUP=${STACK_GROUP:-2000}
# Long enough for every device to check in (one FREQ of ramp) and the
# stack, created then, to reach its group.
DURATION=${DURATION:-180s}
# The devices' first contacts spread over RAMP (0: one FREQ).
RAMP=${RAMP:-0}
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
	-devices "$DEVICES" -standard "$STANDARD" -freq "$FREQ" -poll-freq "$POLL_FREQ" \
	-tunnels "$TUNNELS" -busy-tunnels "$BUSY_TUNNELS" -tunnel-requests-per-sec "$TUNNEL_REQUESTS" \
	-stack-group "$STACK_GROUP" -duration "$DURATION" -ramp "$RAMP" -commands-per-sec "$COMMANDS" \
	-changes-per-hour "$CHANGES" -capture "$CAPTURE" \
	-server-pid "$server_pid" -metrics "http://$METRICS_ADDR/metrics" \
	-json "$OUT/report.json" -html "$OUT/report.html"
echo "bench-fleet: report in $OUT/report.json and $OUT/report.html"
