#!/usr/bin/env bash
# Regenerates this snapshot: the quick-profile runs behind it (cached runs are reused), then the report.
# Run from the repository root: bash reports/regenerate.sh
# JOBS=K runs the training as K workers, each pinned to one core (taskset) and taking the next job of one
# shared list until it is empty: on 2 cores that finishes far sooner than one worker on both cores (small
# networks scale poorly across threads), and no core idles while jobs remain, whichever jobs are long on the
# CPU at hand (srn and jin2018 are the longest on an fp32 CPU, the video stages on a bf16 one). JOBS=1 (the
# default) runs the list in order on every core.
# Measured wall times are in reports/README.md's provenance and docs/DESIGN.md "Profiles".
set -euo pipefail
# Every result must name a commit that reproduces it: refuse to run with uncommitted changes to tracked files.
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "error: $(pwd) has uncommitted changes to tracked files; commit or stash them, then rerun" >&2
  exit 2
fi
bench=${BENCH:-.venv/bin/bench}
jobs=${JOBS:-1}

# The jobs, one bench command each, the longest first so that they do not end the list alone. The video
# methods go by (N, seed): the paper's method, its DM alone, its oracle and a floor share stages. Ablations use
# seed 0 (the claims pair each one with ours's seed 0) and come after it: a job that needs a stage another
# worker is training waits on that stage's lock.
list=("run --method jin2018 --frames 7 --no-floor" "run --method srn --frames 9 --no-floor")
for n in 9 7; do
  for seed in 0 1 2; do
    list+=("run --method ours,ours-static,ours-gt-center,gt-static --frames $n --seeds $seed --no-floor")
  done
done
for ablation in ours-intensity ours-nonrecurrent ours-joint ours-no-sharp ours-single-scale ours-no-tv \
                ours-dm-resblocks ours-dm-growth32 ours-dm-growth96; do
  list+=("ablate --seeds 0 --only $ablation")
done

# One worker: takes the list's next line under a lock until none is left, goes on past a failed job (the
# others still train) and fails at the end if one did; $1 is its core, or "" for all the usable ones.
worker() {
  local job failed=0
  while job=$(flock "$queue.lock" bash -c 'head -n 1 "$0"; sed -i 1d "$0"' "$queue") && [ -n "$job" ]; do
    echo "$(date -u +%FT%TZ) worker ${1:-all}: bench $job"
    local rc=0
    # shellcheck disable=SC2086  # a job is words
    if [ -n "$1" ]; then taskset -c "$1" "$bench" $job || rc=$?; else "$bench" $job || rc=$?; fi
    if [ "$rc" != 0 ]; then
      failed=1
      echo "error: bench $job failed (exit $rc, its output is above); the other jobs go on" >&2
    fi
  done
  return "$failed"
}

"$bench" prepare  # every job needs the sets: make them once, before the workers start
"$bench" run --method blurred --frames 7,9
queue=$(mktemp)
trap 'rm -f "$queue" "$queue.lock"' EXIT
printf '%s\n' "${list[@]}" > "$queue"
if [ "$jobs" = 1 ]; then
  worker ""
else
  read -r -a cores <<< "$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
  pids=() status=0
  for ((i = 0; i < jobs; i++)); do worker "${cores[i % ${#cores[@]}]}" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ "$status" = 0 ] || exit 1  # the report waits for every run: rerun to train only what failed
fi
# The size and speed claims are judged at the paper's sizes: time the paper-sized networks (untrained) at
# the paper's 1280x704 and keep the result in the runs store, where the report reads it.
"$bench" perf --profile paper --frames 7 --repeats 5 --store
"$bench" report --format md,csv,tex,png,gif,html
