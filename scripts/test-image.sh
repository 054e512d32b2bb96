#!/usr/bin/env bash
# Run the built bids_recon image for real, as a user would (podman; Docker takes the same flags).
#
#   scripts/test-image.sh [TAG] [--keep DIR]
#
# Every container runs with no network, a read-only root file system (a tmpfs on /tmp) and the
# data bind-mounted, as a non-root user:
#   1. --version, --help, the user the image runs as, torch's build and CUDA status;
#   2. bids_recon-simulate as an arbitrary UID (-u 4242:4242, as `-u $(id -u):$(id -g)` does);
#   3. the demo: participant (built-in network, input validated by the bundled BIDS validator)
#      and group levels as the image's user (UID 1000), dataset mounted read-only;
#   4. the BIDS validator on the outputs, and the reports and tables they must hold;
#   5. if the image has baked VGG19 weights (/opt/weights), VGG19 features without --weights;
#   6. if this checkout has .venv/bin/bids_recon, the same demo outside the container, timed.
# Needs root here (to hand the bind-mounted folders to the container users). Exits non-zero at
# the first failed check. --keep DIR keeps the dataset and outputs in DIR (default: a temporary
# folder, removed at the end).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")
tag="bids_recon:$version"
keep=""
while [ $# -gt 0 ]; do
    case $1 in
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) echo "test-image.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
        *) tag=$1; shift ;;
    esac
done
if [ -n "$keep" ]; then
    root=$(realpath -m "$keep"); rm -rf "$root"; mkdir -p "$root"
else
    root=$(mktemp -d /tmp/bids_recon-image-test.XXXXXX)
    trap 'rm -rf "$root"' EXIT
fi

run=(podman run --rm --network none --read-only --tmpfs /tmp)
if ! "${run[@]}" "$tag" --version >/dev/null 2>&1; then
    # Machines with cgroups v1/v2 "hybrid" and a restricted setrlimit (this project's build
    # machines): crun refuses both, runc with explicit limits starts the container.
    run+=(--runtime runc --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
    echo "== podman run with its defaults failed; using: ${run[*]}"
fi
step() { echo; echo "== $*"; }
timed() {  # run a command, then print its wall time
    local t0 ds
    t0=$(date +%s%N)
    "$@"
    ds=$(( ($(date +%s%N) - t0) / 100000000 ))
    echo "   ($((ds / 10)).$((ds % 10)) s)"
}

step "1. $tag: version, help, user, torch"
"${run[@]}" "$tag" --version
"${run[@]}" "$tag" --help > "$root/help.txt"  # whole: a pipe closed early fails podman
head -3 "$root/help.txt"
"${run[@]}" --entrypoint id "$tag"
"${run[@]}" --entrypoint python3 "$tag" -c \
    "import sys, torch; print('Python', sys.version.split()[0], '| torch', torch.__version__, \
'| CUDA build', torch.version.cuda, '| GPU visible', torch.cuda.is_available())"

step "2. simulate the demo dataset as UID 4242 (any UID works)"
# the simulator writes next to its output and renames (atomic): mount the parent folder
mkdir -p "$root/sim" "$root/out" "$root/work"
chown 4242:4242 "$root/sim"
chown 1000:1000 "$root/out" "$root/work"
timed "${run[@]}" -u 4242:4242 -v "$root/sim:/sim" --entrypoint bids_recon-simulate "$tag" \
    /sim/ds --size small
ls -ln "$root/sim/ds" | sed -n '2,4p'

step "3. demo as the image's user: participant, then group"
mounts=(-v "$root/sim/ds:/data:ro" -v "$root/sim/ds/stimuli:/stimuli:ro" -v "$root/out:/out"
        -v "$root/work:/work")
timed "${run[@]}" "${mounts[@]}" "$tag" /data /out participant --participant-label 01 02 \
    -w /work --stimuli-dir /stimuli --network builtin --device cpu
timed "${run[@]}" "${mounts[@]}" "$tag" /data /out group

step "4. outputs: BIDS validator, reports, tables"
"${run[@]}" -v "$root/out:/out:ro" --entrypoint bids-validator-deno "$tag" /out --format json \
    > "$root/validator.json" || true  # non-zero on errors: counted below
for file in group.html sub-01.html sub-02.html group_desc-recon_eval.tsv dataset_description.json
do
    test -s "$root/out/$file" || { echo "missing output: $file" >&2; exit 1; }
done
python3 - "$root/validator.json" "$root/out/group_desc-recon_eval.tsv" <<'EOF'
import csv, json, sys
issues = json.load(open(sys.argv[1]))["issues"]["issues"]
errors = sorted({i["code"] for i in issues if i["severity"] == "error"})
print(f"   BIDS validator on the outputs: {len(errors)} error code(s) {errors}, "
      f"{sum(i['severity'] == 'warning' for i in issues)} warning(s)")
for row in csv.DictReader(open(sys.argv[2]), delimiter="\t"):
    if row["metric"] == "pixel_identification" and row["source"] == "decoded":
        print(f"   {row['participant_id']} {row['roi']} {row['set']}: pixel identification "
              f"{float(row['value']):.3f}")
sys.exit(1 if errors else 0)
EOF
strangers=$(find "$root/out" "$root/work" ! -uid 1000)
if [ -n "$strangers" ]; then echo "not written by UID 1000: $strangers" >&2; exit 1; fi

# the app's own lookup (bids_recon.io.weights) says whether the image has VGG19 weights
vgg19=$("${run[@]}" --entrypoint python3 "$tag" -c \
    "from bids_recon.io.weights import VGG19_SEARCH, find_weights; print(find_weights(VGG19_SEARCH) or '')")
if [ -n "$vgg19" ]; then
    step "5. VGG19 features with the baked weights ($vgg19), no --weights"
    "${run[@]}" -v "$root/sim/ds:/data:ro" -v "$root/out:/out" --entrypoint bids_recon-features \
        "$tag" /data/stimuli/letters --network vgg19 --preprocessing caffe --layers fc8 \
        --out /out/letters_fc8.npz 2>&1 | grep -i -e weights -e wrote
    test -s "$root/out/letters_fc8.npz"
else
    step "5. no VGG19 weights baked into /opt/weights: skipped"
fi

if [ -x "$repo/.venv/bin/bids_recon" ]; then
    step "6. the same demo outside the container ($repo/.venv)"
    rm -rf "$root/host"; mkdir "$root/host"
    timed "$repo/.venv/bin/bids_recon" "$root/sim/ds" "$root/host/out" participant \
        --participant-label 01 02 -w "$root/host/work" --stimuli-dir "$root/sim/ds/stimuli" \
        --network builtin --device cpu 2> "$root/host/participant.log"
    timed "$repo/.venv/bin/bids_recon" "$root/sim/ds" "$root/host/out" group \
        2> "$root/host/group.log"
    if ! cmp <(cut -f1-8 "$root/out/group_desc-recon_eval.tsv") \
        <(cut -f1-8 "$root/host/out/group_desc-recon_eval.tsv"); then
        echo "the group tables inside and outside differ" >&2
        exit 1
    fi
    echo "   same group table inside and outside"
fi
step "all checks passed"
