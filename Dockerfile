# syntax=docker/dockerfile:1
# streamd container image.
#
#   docker build -t streamd:0.1.0 .                            # the daemon only
#   docker build --build-arg EXTRAS=embedded -t streamd:demo .  # + the embedded broker (streamd demo)
#   docker run --rm -p 8080:8080 -v "$PWD/config/o2g.yaml:/etc/streamd/config.yaml:ro" \
#       -e O2G_PASSWORD=... streamd:0.1.0
#
# Rules: the builder stage installs streamd and its dependencies into a virtualenv; the final
# stage copies only that virtualenv onto python:3.11-slim (no compiler, no pip cache, no sources).
# The process runs as uid/gid 10001 and writes only to /var/lib/streamd (spool) and /tmp, so the
# image works with a read-only root filesystem. The config is read from /etc/streamd/config.yaml.

FROM python:3.11-slim AS builder

ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY streamd ./streamd
# constraints.txt pins every dependency (and those of the image extras): reproducible builds.
RUN pip install --no-compile -c /src/constraints.txt "/src${EXTRAS:+[$EXTRAS]}" \
    && python -m compileall -q /opt/venv/lib \
    && streamd --help > /dev/null


FROM python:3.11-slim

LABEL org.opencontainers.image.title="streamd" \
      org.opencontainers.image.description="Contact-centre events to Kafka (O2G, Xima, Alvaria, Calabrio)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMD_HTTP_PORT=8080

RUN groupadd --system --gid 10001 streamd \
    && useradd --system --uid 10001 --gid streamd --home-dir /var/lib/streamd --no-create-home \
       --shell /usr/sbin/nologin streamd \
    && mkdir -p /etc/streamd /var/lib/streamd \
    && chown streamd:streamd /var/lib/streamd \
    && chmod 0750 /var/lib/streamd

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/streamd
VOLUME ["/var/lib/streamd"]
EXPOSE 8080

# The daemon flushes Kafka within shutdown_grace on SIGTERM, then exits 0; give `docker stop`
# a --time above shutdown_grace (Kubernetes: terminationGracePeriodSeconds, set by the chart).
STOPSIGNAL SIGTERM
# /livez answers once the HTTP server is up (after Kafka connected); STREAMD_HTTP_PORT must match
# http.listen in the config. No curl in the image: Python's urllib does the request.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('STREAMD_HTTP_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["streamd", "run"]
CMD ["-c", "/etc/streamd/config.yaml"]
