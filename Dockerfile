# bids_recon container: docker build -t bids_recon:0.1.0 .
# CPU-only, smaller image: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with bids_recon and its dependencies ----
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bids_recon ./bids_recon
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && /opt/venv/bin/pip install --no-cache-dir /src

# ---- weights: fetched once at build time, verified, baked in (nothing is downloaded at run time) ----
FROM builder AS weights
# torchvision's VGG19 (ImageNet); the file name carries the first 8 hex digits of its sha256,
# which download_url_to_file verifies. Pass VGG19_SHA256 to pin the whole digest as well.
ARG VGG19_URL=https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
ARG VGG19_SHA256=
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/bids_recon/torch/hub/checkpoints
RUN /opt/venv/bin/python -c "import sys, torch.hub; torch.hub.download_url_to_file(sys.argv[1], 'vgg19-dcbb9e9d.pth', hash_prefix='dcbb9e9d', progress=False)" "${VGG19_URL}" \
    && if [ -n "${VGG19_SHA256}" ]; then echo "${VGG19_SHA256}  vgg19-dcbb9e9d.pth" | sha256sum -c -; fi \
    && sha256sum vgg19-dcbb9e9d.pth > vgg19-dcbb9e9d.pth.sha256

# ---- runtime ----
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="bids_recon" \
      org.opencontainers.image.description="BIDS App: deep image reconstruction from fMRI (Shen et al. 2019)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/bids-recon/bids_recon" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/bids_recon --shell /bin/bash bids_recon
COPY --from=builder /opt/venv /opt/venv
COPY --from=weights /opt/bids_recon/torch /opt/bids_recon/torch
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/bids_recon \
    TORCH_HOME=/opt/bids_recon/torch \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIDS_RECON_CONTAINER_TAG=bids_recon:${VERSION}
# any UID (docker -u, Singularity) may use HOME; check the install works
RUN chmod -R go=u /home/bids_recon && bids_recon --version
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["bids_recon"]
