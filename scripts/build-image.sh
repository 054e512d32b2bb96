#!/usr/bin/env bash
# Build the bids_recon container image with podman, without pulling from a registry.
#
#   scripts/build-image.sh [--tag TAG] [--base IMAGE] [--weights PATH]... [--save FILE.tar]
#                          [--build-arg NAME=VALUE]...
#
# 1. The base: unless --base names an image, a Debian bookworm root file system made by
#    mmdebstrap from Debian's packages (python3 3.11, python3-venv, ca-certificates) and imported
#    as localhost/bids_recon-base:bookworm; made once, reused after (remove it to remake it).
# 2. The image: the Dockerfile built on that base by `podman build --isolation chroot` (no
#    container runtime needed for the RUN steps); Python packages come from PyPI.
# --weights PATH   a weights file, or a folder of them (kept with its layout), baked into
#                  /opt/weights, where bids_recon finds them by name (weights/README.md);
#                  repeat for several. Without it the image has no pretrained weights.
# --ca-cert FILE   a CA bundle for pip inside the build (a network that intercepts TLS), passed
#                  as a build secret, not kept in the image; default: $PIP_CERT when set.
# --save FILE.tar  also write the image as a docker-archive (for Apptainer/Singularity:
#                  `apptainer build bids_recon.sif docker-archive://FILE.tar`).
# Needs root (mmdebstrap and podman in root mode) and the Debian packages podman, buildah and
# mmdebstrap. Prints the build time and the image size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")
tag="bids_recon:$version"
base=""
local_base="localhost/bids_recon-base:bookworm"
mirror="http://deb.debian.org/debian"
weights=()
save=""
ca_cert=${PIP_CERT:-}
build_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --weights) weights+=("$2"); shift 2 ;;
        --save) save=$2; shift 2 ;;
        --ca-cert) ca_cert=$2; shift 2 ;;
        --build-arg) build_args+=(--build-arg "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done

rootfs=""
weights_dir=weights
cleanup() {
    if [ -n "$rootfs" ]; then rm -f "$rootfs"; fi
    if [ "$weights_dir" != weights ]; then rm -rf "${repo:?}/$weights_dir"; fi
}
trap cleanup EXIT

start=$(date +%s)
if [ -z "$base" ]; then
    base=$local_base
    if ! podman image exists "$base"; then
        echo "== making the Debian base $base with mmdebstrap"
        rootfs=$(mktemp --suffix=.tar)
        mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
            bookworm "$rootfs" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
            "deb ${mirror%/debian}/debian-security bookworm-security main"
        podman import --change 'CMD ["/bin/bash"]' "$rootfs" "$base"
    fi
fi

if [ ${#weights[@]} -gt 0 ]; then
    weights_dir=build/weights
    rm -rf "${repo:?}/$weights_dir"
    mkdir -p "$repo/$weights_dir"
    for path in "${weights[@]}"; do
        if [ -d "$path" ]; then
            cp -R --reflink=auto "$path"/. "$repo/$weights_dir"/
        else
            cp --reflink=auto "$path" "$repo/$weights_dir"/
        fi
    done
    chmod -R a+rX "$repo/$weights_dir"
    echo "== weights baked into /opt/weights:"
    (cd "$repo/$weights_dir" && find . -type f -printf '   %P (%s bytes)\n')
fi

if [ -n "$ca_cert" ]; then
    build_args+=(--secret "id=pip_ca,src=$ca_cert")
fi
echo "== building $tag on $base"
podman build --isolation chroot --tag "$tag" \
    --build-arg BASE_IMAGE="$base" --build-arg WEIGHTS_DIR="$weights_dir" \
    --build-arg VERSION="$version" --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg VCS_REF="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "${build_args[@]}" "$repo"
if [ -n "$save" ]; then
    echo "== saving $tag to $save (docker-archive)"
    rm -f "$save"
    podman save --format docker-archive --output "$save" "$tag"
fi
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "== built $tag in $(( $(date +%s) - start )) s; image size $(numfmt --to=si --suffix=B "$size")"
