# syntax=docker/dockerfile:1
# One image for every part of image-sync: the webhook, the prefetcher, the certificate job
# (entrypoint `image-sync`), and the static sleeper that keeper and puller pods run
# (/usr/local/bin/image-sync-sleeper). The simulated cluster (`image-sync sim`, `demo`) is a
# test and demo tool, the `image-sync[sim]` extra: not in this image.
#
#   docker build -t ghcr.io/image-sync/image-sync:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/image-sync/image-sync:0.1.0 --push .
#
# The sleeper is compiled per platform: keeper pods copy it into images of the same
# architecture as the node, so a multi-arch build needs both platforms.

ARG PYTHON_IMAGE=python:3.11-slim

# --- the sleeper: a static binary that runs in any image, with or without a shell -------
FROM ${PYTHON_IMAGE} AS sleeper
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY tools/sleeper.c /src/sleeper.c
RUN mkdir -p /out \
    && gcc -static -Os -s -Wall -Wextra -Werror -o /out/image-sync-sleeper /src/sleeper.c \
    && /out/image-sync-sleeper --exit

# --- the Python package as a wheel ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imagesync ./imagesync
COPY webhook ./webhook
COPY prefetcher ./prefetcher
COPY certs ./certs
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- the runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="image-sync" \
      org.opencontainers.image.description="Keep the images a Kubernetes cluster uses present on every node that may run them." \
      org.opencontainers.image.source="https://github.com/image-sync/image-sync" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 image-sync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin image-sync
COPY --from=sleeper --chmod=0755 /out/image-sync-sleeper /usr/local/bin/image-sync-sleeper
# Numeric, so the kubelet can check runAsNonRoot without looking the name up.
USER 10001:10001
EXPOSE 8443 8080
ENTRYPOINT ["image-sync"]
CMD ["--help"]
