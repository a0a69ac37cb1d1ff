# The CTI daemon. Asterisk and PostgreSQL run beside it (see compose.yaml).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cti ./cti
COPY crm ./crm
COPY acd ./acd
COPY ivr ./ivr
COPY recording ./recording
COPY phone ./phone
COPY api ./api
COPY server ./server
COPY emergency ./emergency
RUN pip install . && useradd --system --home /var/lib/cti cti && mkdir -p /var/lib/cti && chown cti /var/lib/cti
USER cti
ENV CTI_STATE_DIR=/var/lib/cti CTI_LOG_FORMAT=json
EXPOSE 8765 4573
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2)" || exit 1
CMD ["cti", "serve"]
