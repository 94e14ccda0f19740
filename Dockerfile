# agentnet-server in a container (docs/operations.md): multi-stage, runs as a non-root user,
# keeps everything in the /var/lib/agentnet volume, health-checked on the plain-HTTP /healthz.
#   docker build -t agentnet . && docker compose up -d
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY . /src
RUN python -m venv /opt/agentnet \
    && /opt/agentnet/bin/pip install --no-cache-dir --disable-pip-version-check /src

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 agentnet \
    && useradd --system --uid 10001 --gid agentnet --home-dir /var/lib/agentnet --create-home agentnet \
    && chmod 0700 /var/lib/agentnet
COPY --from=build /opt/agentnet /opt/agentnet
ENV PATH=/opt/agentnet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGENTNET_DATA_DIR=/var/lib/agentnet \
    AGENTNET_GRPC_ADDR=0.0.0.0:50051 \
    AGENTNET_HTTP_ADDR=0.0.0.0:8443 \
    AGENTNET_HEALTH_ADDR=0.0.0.0:9464 \
    AGENTNET_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/agentnet
VOLUME ["/var/lib/agentnet"]
EXPOSE 50051 8443 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)"]
# The first start makes the CA and the server certificate (AGENTNET_HOST: the name clients use).
CMD ["sh", "-c", "agentnet-server certs --quiet ${AGENTNET_HOST:+--host \"$AGENTNET_HOST\"} && exec agentnet-server serve"]
