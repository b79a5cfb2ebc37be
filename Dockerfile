# syntax=docker/dockerfile:1
# One image for every process kind: `kontainers operator|gateway|sidecar|egress`.
# Build: docker build -t kontainers:dev .   (the chart's image.repository/image.tag point at it)
#
# BASE_IMAGE is any Debian bookworm image with python3 (3.11) and its venv module: the default
# python:3.11-slim-bookworm, or the debootstrap base that `python -m kontainers.cluster.images`
# builds for the local node (Debian's own python3, python3-venv, python3-pip). Both stages install
# into a virtual environment, so Debian's "externally managed" system Python is never touched.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Wheels are built in a throwaway stage so the runtime image carries no compilers or caches.
FROM ${BASE_IMAGE} AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/build
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies' wheels come from pyproject.toml alone (an empty package stands in for the
# sources), so an edit of operator/ rebuilds only the project's own wheel below. --use-pep517
# builds sdists (pyperclip) in isolation with any pip, also Debian's 23.0 without `wheel`.
RUN mkdir -p operator/kontainers \
 && /opt/build/bin/pip wheel --no-cache-dir --use-pep517 --wheel-dir /wheels ".[egress]" \
 && rm /wheels/kontainers-*.whl \
 && rm -r operator \
 && cd /wheels && sha256sum *.whl > SHA256SUMS
COPY operator/ operator/
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && cd /dist && sha256sum *.whl > SHA256SUMS

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/kontainers/bin:$PATH
# A fixed numeric uid/gid, so Kubernetes `runAsNonRoot` can verify it without resolving names.
RUN groupadd --system --gid 10001 kontainers \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/kontainers --create-home \
        --shell /usr/sbin/nologin kontainers
# The wheels are bind-mounted, never copied into a layer. Each install step follows a COPY of
# the checksums of the wheels it mounts, so builders that cache a `RUN --mount=from=<stage>`
# step by its text alone (buildah until containers/buildah#6609 was fixed) still redo it when
# the wheels change. Dependencies first, so an edit of operator/ reinstalls only the project.
COPY --from=wheels /wheels/SHA256SUMS /usr/local/share/kontainers/dependencies.sha256
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python3 -m venv /opt/kontainers \
 && /opt/kontainers/bin/pip install --no-cache-dir --no-index --no-deps /wheels/*.whl
COPY --from=wheels /dist/SHA256SUMS /usr/local/share/kontainers/kontainers.sha256
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,from=wheels,source=/dist,target=/dist \
    /opt/kontainers/bin/pip install --no-cache-dir --no-index --find-links=/wheels --find-links=/dist \
        "kontainers[egress]" \
 && /opt/kontainers/bin/pip check
USER 10001:10001
WORKDIR /home/kontainers
ENTRYPOINT ["kontainers"]
CMD ["--help"]
