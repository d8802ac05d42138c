# Outpost server: static binary FROM scratch. Built by `make image`, whose
# context holds outpost-server and rootfs/ (CA bundle, empty /tmp).
FROM scratch
COPY rootfs/ /
COPY outpost-server /outpost-server
# bbolt store, TLS material and settings live here.
VOLUME /data
# 9443: HTTPS API, UI and edge endpoints. 8000: agent tunnels (wss).
EXPOSE 9443 8000
ENTRYPOINT ["/outpost-server", "--data", "/data"]
