#!/usr/bin/env bash
# How long would the paper's setting take on this GPU? One command:
#
#     bash benchmarks/gpu_check.sh                      # renders a 720p GoPro-layout footage root first
#     bash benchmarks/gpu_check.sh --root /data/GOPRO_Large_all --iters 200
#
# It renders a footage root with the synthetic renderer (benchmarks/make_footage.py; or takes --root),
# prepares it as the paper profile's 9-frame set, dry-runs every stage of `ours` on cuda at the paper's crop,
# batch and widths (`bench run --profile paper --dry-run K`: the training loop's own step, K iterations per
# stage, nothing trained is kept), and prints the projected wall time of the whole paper profile, each
# stage's share of step time spent waiting for data, and the achieved share of the GPU's dense bfloat16
# matmul rate, measured with a matmul in the same run. Everything goes under --work (default
# $TMPDIR/bench-gpu-check); the dry-run record stays in <work>/runs/dryrun/.
set -euo pipefail

usage() {
    echo "usage: bash benchmarks/gpu_check.sh [--root GOPRO_ROOT] [--iters K] [--work DIR]"
}

die() {
    echo "error: $*" >&2
    exit 2
}

ROOT=""
ITERS=100
WORK="${TMPDIR:-/tmp}/bench-gpu-check"
while (($#)); do
    case "$1" in
        --root)
            [[ $# -ge 2 && -n $2 ]] || die "--root needs a folder, e.g. --root /data/GOPRO_Large_all"
            ROOT=$2
            shift 2
            ;;
        --iters)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--iters takes a positive whole number, e.g. --iters 100"
            ITERS=$2
            shift 2
            ;;
        --work)
            [[ $# -ge 2 && -n $2 ]] || die "--work needs a folder, e.g. --work /tmp/gpu-check"
            WORK=$2
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            die "unknown argument '$1'; $(usage)"
            ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null ||
    die "no CUDA device visible to torch (python: $PYTHON); run this on a machine with an NVIDIA GPU and a CUDA build of PyTorch"
if [[ -n $ROOT && ! -d $ROOT ]]; then
    die "--root $ROOT: no such folder; give a GOPRO_Large_all layout (train/ and test/ folders of frames) or leave --root out to render one"
fi

bench() {
    "$PYTHON" -c 'import sys; from bench.cli import main; sys.argv[0] = "bench"; main()' "$@"
}

if [[ -z $ROOT ]]; then
    ROOT=$WORK/footage
    if [[ ! -d $ROOT/train ]]; then
        "$PYTHON" "$REPO/benchmarks/make_footage.py" "$ROOT"
    fi
fi
# The dry run prepares (or verifies) the 9-frame set itself: one pass over the files, not two.
bench run --method ours --profile paper --frames 9 --source gopro --root "$ROOT" --device cuda \
    --data-dir "$WORK/datasets" --runs-dir "$WORK/runs" --dry-run "$ITERS"

"$PYTHON" - "$WORK/runs/dryrun" <<'EOF'
import json
import pathlib
import sys

records = sorted(pathlib.Path(sys.argv[1]).glob("ours-cuda-*.json"), key=lambda p: p.stat().st_mtime)
record = json.loads(records[-1].read_text())
days = record["projected_total_s"] / 86400
print(f"\n{record['device']}: the paper profile (ours, all stages, then evaluation) would take about "
      f"{days:.2f} days ({record['projected_total_s'] / 3600:.1f} h)")
rate = record["matmul_rates"]["bf16"]
for row in record["stages"]:
    share = row["mac_rate"] / rate if row["mac_rate"] else float("nan")
    wait = row["data_wait_share"] if row["data_wait_share"] is not None else float("nan")
    print(f"  {row['stage']:<12} {row['step_s'] * 1000:8.1f} ms/step  data wait {100 * wait:5.1f}%  "
          f"{100 * share:5.1f}% of the dense bf16 matmul rate ({rate / 1e12:.0f} TMAC/s, measured in this run; "
          f"precision {row['precision']})")
print(f"record: {records[-1]}")
EOF
