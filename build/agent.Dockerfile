# Outpost edge agent: static binary FROM scratch. Built by `make image`, whose
# context holds outpost-agent and rootfs/ (CA bundle, empty /tmp).
FROM scratch
COPY rootfs/ /
COPY outpost-agent /outpost-agent
# Identity key, edge key and executed command ids persist here.
VOLUME /data
ENTRYPOINT ["/outpost-agent"]
