# The CTI daemon. Asterisk (deploy/asterisk/Containerfile) and PostgreSQL run beside it
# (compose.yaml). The base is a build argument: any Debian-like image with python3 >= 3.11;
# scripts/build-images makes one with debootstrap where Docker Hub is out of reach
# (podman build --isolation chroot --build-arg BASE=localhost/cti-base:sid -t cti .).
ARG BASE=docker.io/library/debian:trixie-slim

FROM ${BASE} AS build
# Packages a local base already holds are not downloaded again.
ARG APT_OPTS=
RUN dpkg -s python3 python3-venv ca-certificates >/dev/null 2>&1 || { apt-get $APT_OPTS update \
      && apt-get $APT_OPTS install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY pyproject.toml README.md LICENSE CHANGELOG.md MANIFEST.in ./
COPY cti ./cti
COPY crm ./crm
COPY acd ./acd
COPY ivr ./ivr
COPY recording ./recording
COPY phone ./phone
COPY kb ./kb
COPY dialer ./dialer
COPY emergency ./emergency
COPY messaging ./messaging
COPY omni ./omni
COPY mail ./mail
COPY api ./api
COPY server ./server
# The daemon and its dependencies in a virtualenv that the run stage copies whole.
# PIP_CERT: a CA bundle for pip where a proxy re-signs TLS (scripts/build-images passes
# the host's in; the run stage never sees it).
ARG PIP_CERT
ARG PIP_INDEX_URL
RUN python3 -m venv /opt/cti/venv \
    && /opt/cti/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/cti/venv/bin/pip uninstall -y pip \
    && find /opt/cti/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
ARG APT_OPTS=
RUN dpkg -s python3 libjemalloc2 ca-certificates >/dev/null 2>&1 || { apt-get $APT_OPTS update \
      && apt-get $APT_OPTS install -y --no-install-recommends python3 libjemalloc2 ca-certificates \
      && rm -rf /var/lib/apt/lists/*; } \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -1)" /usr/local/lib/libjemalloc.so.2 \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/cti --create-home --shell /usr/sbin/nologin cti \
    && chmod 700 /var/lib/cti
COPY --from=build /opt/cti/venv /opt/cti/venv
ENV PATH=/opt/cti/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CTI_STATE_DIR=/var/lib/cti CTI_LOG_FORMAT=json \
    CTI_SECRETS_DIR=/run/secrets \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
# jemalloc: 0.35 MB/h of RSS growth against glibc's 8.7 MB/h over a day's soak
# (BENCHMARKS.md, "Memory over a day"). Secrets come as files in /run/secrets (compose
# secrets), never as environment variables in the image or the compose file; the user's
# uid is fixed (10001) so that a secret file can be made readable by it alone.
USER cti
WORKDIR /var/lib/cti
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2)"]
CMD ["cti", "serve"]
