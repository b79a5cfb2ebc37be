# syntax=docker/dockerfile:1
# One image for every process kind: `kontainers operator|gateway|sidecar|egress`.
# Build: docker build -t kontainers:dev .   (the chart's image.repository/image.tag point at it)

# Wheels are built in a throwaway stage so the runtime image carries no compilers or caches.
FROM python:3.11-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[egress]"

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed numeric uid/gid, so Kubernetes `runAsNonRoot` can verify it without resolving names.
RUN groupadd --system --gid 10001 kontainers \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/kontainers --create-home \
        --shell /usr/sbin/nologin kontainers
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "kontainers[egress]"
USER 10001:10001
WORKDIR /home/kontainers
ENTRYPOINT ["kontainers"]
CMD ["--help"]
