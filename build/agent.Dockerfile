# Outpost edge agent: static binaries FROM scratch. Built by `make image`, whose
# context holds outpost-agent, its compose helper outpost-compose (the agent
# runs it beside itself for each stack deploy) and rootfs/ (CA bundle, empty
# /tmp).
FROM scratch
COPY rootfs/ /
COPY outpost-agent /outpost-agent
COPY outpost-compose /outpost-compose
# Identity key, edge key and executed command ids persist here.
VOLUME /data
ENTRYPOINT ["/outpost-agent"]
