"""`bench run`'s verdict against the floors, for the run it just scored (docs/DESIGN.md "Metrics").

A trained video method must beat two trivial answers on the same test samples: `blurred` (the registry's
`floor` entry: the blurred input repeated N times) and its own deblurring network alone (the entry's
`deblur_alone`, `ours-static` for `ours`: the deblurred centre repeated). Eq. 6 rewards the mean, so both are
strong floors. The verdict uses the report's one decision rule (`bench.verdict.judge`: a paired bootstrap
over the run's test samples) on `VERDICT_METRICS`, so a user whose machine gives another outcome than the
snapshot sees it as the run ends, not in a later report.

A comparator is taken from this command (the `blurred` run `--floor` scores) or from the store: the newest
finished run of that method on the same scored set (digest), N, seed and resolved profile (any seed for an
untrained floor such as `blurred`). One not stored is named with the command that scores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.metrics import lower_is_better
from bench.registry import get_method
from bench.store import RunMetrics, RunRecord, latest_run, read_record
from bench.verdict import HELD, Judgement, judge
from methods import registry

VERDICT_METRICS = ("eq6", "ppsnr")  # the two the floors are judged on: the paper's and the field's


@dataclass(frozen=True)
class FloorVerdict:
    """One metric of the run against one floor."""

    floor: str  # the comparator's method name
    metric: str  # metrics.json key
    judgement: Judgement | None  # None when the floor has no stored run to compare with
    how_to_score: str = ""  # the command that stores the missing floor


def floors_of(method: str) -> list[str]:
    """The floors `method` is judged against: `blurred` and its deblurring network alone, where it has one.
    A still entry (one image repeated: `blurred`, `ours-static`, `gt-static`, `srn`) has none: it is a
    floor's kind of answer, and loses Eq. 6 to `blurred` on every machine (Eq. 6 rewards the mean)."""
    entry = registry.get(method)
    if entry.floor or entry.still:
        return []
    names = [n for n in registry.names() if registry.get(n).floor]
    names += [entry.deblur_alone] if entry.deblur_alone else []
    return [n for n in dict.fromkeys(names) if n != method]


def _values(metrics: RunMetrics, key: str) -> dict[int, dict[str, float]]:
    return {metrics.seed: {row["id"]: float("nan") if row.get(key) is None else float(row[key])
                           for row in metrics.samples}}


def stored_twin(runs_dir: Path | str, method: str, of: RunMetrics, resolved_profile: dict,
                any_seed: bool = False) -> RunMetrics | None:
    """The newest finished stored run of `method` scored on the set `of` was scored on (its digest), at the
    same N, seed and resolved profile; None if there is none. `any_seed` for a method without training,
    whose scores no seed changes: its run at one seed stands for every seed, as the report pairs it."""
    def same(record: RunRecord) -> bool:
        seed_ok = any_seed or record.metrics.seed == of.seed
        return seed_ok and record.metrics.eval_sha256 == of.eval_sha256 and \
            record.config.resolved_profile == resolved_profile

    found = latest_run(runs_dir, method, of.frames, match=same)
    return read_record(found).metrics if found is not None else None


def floor_verdicts(run_folder: Path, metrics: RunMetrics, runs_dir: Path | str,
                   scored: dict[str, RunMetrics]) -> list[FloorVerdict]:
    """`metrics` (the run in `run_folder`) against each of its floors on `VERDICT_METRICS`; `scored` holds
    floors this command scored itself, by method name."""
    record = read_record(run_folder)
    resolved = record.config.resolved_profile if record is not None and record.config is not None else None
    out = []
    for floor in floors_of(metrics.method):
        fixed = not get_method(floor, metrics.frames).stages  # one seed stands for every seed
        other = scored.get(floor) or (stored_twin(runs_dir, floor, metrics, resolved, any_seed=fixed)
                                      if resolved else None)
        for key in VERDICT_METRICS:
            if other is None:
                fix = (f"bench run --method {floor} --profile {metrics.profile} --frames {metrics.frames} "
                       f"--seeds {metrics.seed}")
                out.append(FloorVerdict(floor, key, None, fix))
                continue
            j = judge(_values(metrics, key), _values(other, key), lower_is_better(key), worse_fixed=fixed)
            out.append(FloorVerdict(floor, key, j))
    return out


def clears_every_floor(verdicts: list[FloorVerdict]) -> bool | None:
    """True when every judged verdict is held, False when one is not; None when none could be judged."""
    judged = [v.judgement.verdict == HELD for v in verdicts if v.judgement is not None]
    return all(judged) if judged else None
