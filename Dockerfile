# bids_recon container image (README, "Containers").
#   scripts/build-image.sh                  local Debian base made by mmdebstrap, podman, no registry
#   docker build -t bids_recon:0.1.0 .      from python:3.11-slim-bookworm (Docker Hub)
# Build arguments:
#   BASE_IMAGE       any Debian-like image with python3 (and its venv module) of PYTHON_VERSION
#   TORCH_INDEX_URL  where torch comes from. PyPI (default): its Linux x86_64 wheels are CUDA 13.0
#                    builds, which also run on CPU; a GPU needs an NVIDIA driver >= 580.
#                    https://download.pytorch.org/whl/cu126 for older drivers (>= 525),
#                    https://download.pytorch.org/whl/cpu for a CPU-only image (about 5 GB smaller).
#   WEIGHTS_DIR      a folder of the build context baked into /opt/weights, where bids_recon looks
#                    for weights by name (default: weights/, empty but for its README).
ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

FROM ${BASE_IMAGE}
ARG PYTHON_VERSION
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

# torch first, in its own layer: the largest and the least often changed. A build secret
# "pip_ca" (a CA bundle, for networks that intercept TLS) is used by pip and not kept.
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; \
sys.exit(None if v == '${PYTHON_VERSION}' else 'the base image has Python ' + v + ', not ${PYTHON_VERSION}')" \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

COPY pyproject.toml README.md /src/
COPY bids_recon /src/bids_recon
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip install --no-cache-dir "/src[validator]" \
    && rm -rf /src \
    && useradd --uid 1000 --user-group --create-home --home-dir /home/bids_recon \
        --shell /bin/bash bids_recon \
    && chmod -R go=u /home/bids_recon

# weights, then labels, last: changing them rebuilds nothing else (a changed ARG value
# invalidates the cache of every later RUN)
ARG WEIGHTS_DIR=weights
COPY ${WEIGHTS_DIR}/ /opt/weights/

ARG VERSION=0.1.0
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/bids_recon \
    BIDS_RECON_WEIGHTS_DIR=/opt/weights \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIDS_RECON_CONTAINER_TAG=bids_recon:${VERSION}
USER 1000:1000
WORKDIR /tmp
RUN bids_recon --version
ENTRYPOINT ["bids_recon"]
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="bids_recon" \
      org.opencontainers.image.description="BIDS App: deep image reconstruction from fMRI (Shen et al. 2019)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/bids-recon/bids_recon" \
      org.opencontainers.image.licenses="Apache-2.0"
