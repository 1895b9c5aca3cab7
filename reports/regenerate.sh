#!/usr/bin/env bash
# Regenerates this snapshot: the quick-profile runs behind it (cached runs are reused), then the report.
# Run from the repository root: bash reports/regenerate.sh   (about 3 hours of one-process time on 2 CPU cores
# when nothing is cached; the 2026-11-30 snapshot ran it as two parallel streams in 76 minutes)
set -euo pipefail
# Every result must name a commit that reproduces it: refuse to run with uncommitted changes to tracked files.
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "error: $(pwd) has uncommitted changes to tracked files; commit or stash them, then rerun" >&2
  exit 2
fi
bench=${BENCH:-.venv/bin/bench}
for m in ours ours-static ours-gt-center gt-static srn; do "$bench" run --method "$m" --frames 9 --no-floor; done
for m in ours jin2018 ours-static ours-gt-center gt-static; do "$bench" run --method "$m" --frames 7 --no-floor; done
"$bench" run --method blurred --frames 7,9
# Ablations with three seeds, paired with ours's seeds in the claims (about 2 hours of one-process time):
"$bench" ablate --seeds 0,1,2
# The size and speed claims are judged at the paper's sizes: time the paper-sized networks (untrained) at
# the paper's 1280x704 and keep the result in the runs store, where the report reads it.
"$bench" perf --profile paper --frames 7 --repeats 5 --store
"$bench" report --format md,csv,tex,png,gif
