"""Running a stage graph (`bench.grid`) as jobs: on Slurm through submitit, or on this machine through
submitit's local executor; the job ledger `bench status` reads (docs/DESIGN.md "Stage graph").

Slurm: every node is submitted at once. The nodes with nothing to wait for go in one job array (at most
`array_parallelism` running), every other node is one job with `afterok` on exactly the jobs of its
dependencies and `kill-on-invalid-dep`, so a failed job cancels its dependents and nothing else. A node
whose job from an earlier submission is still queued or running is not submitted again: its dependents wait
on that job. Local: the same graph, run here K jobs at once (K = usable cores / `cpus_per_task`), each job
pinned to its own cores, a node started once its dependencies finished, a failed one failing only its
dependents.

Every submission writes `runs/jobs/<grid>/jobs.json` (the ledger: per job its node, id, dependencies and log
files) beside submitit's `logs/`. A job's state is read, never stored for Slurm: done when its output is in
the store, queued or running as `squeue` says, failed otherwise (with its log, or "never started" when it
was cancelled). Slurm's accounting is not needed (`sacct` is never called).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fileio import atomic_write_json, read_json
from bench.grid import Graph, Job, Node, node_done, run_node

LAUNCHERS = ("local", "slurm")
LEDGER = "jobs.json"
POLL_S = 0.25  # the local launcher's look at its jobs
NO_LIMIT_MIN = 10 * 365 * 24 * 60  # a local job without --time: submitit's executor needs some limit
SLURM_ACTIVE = {"PENDING": "queued", "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
                "SUSPENDED": "running", "REQUEUED": "queued", "RESIZING": "running"}


@dataclass(frozen=True)
class LaunchOptions:
    """How each job of a grid is run; the Slurm fields keep sbatch's names (dashes in the config file)."""

    launcher: str = "local"  # "local" (this machine) | "slurm" (sbatch through submitit)
    partition: str | None = None  # sbatch --partition (None: the cluster's default)
    gpus_per_node: int | None = None  # sbatch --gpus-per-node (None: --nproc when above 1, else none)
    nodes: int = 1  # sbatch --nodes of a stage job; above 1, torchrun's rendezvous comes from Slurm
    cpus_per_task: int = 1  # sbatch --cpus-per-task; local: the cores of each job (K = cores / this)
    mem: str | None = None  # sbatch --mem, e.g. "32G" (None: the cluster's default)
    time: str | None = None  # sbatch --time: minutes or [D-]HH:MM:SS (None: the partition's default
    #   limit, no `--time` line); local: each job's limit (None: none)
    array_parallelism: int = 16  # the %K of sbatch --array: array tasks running at once
    sbatch: tuple[tuple[str, str], ...] = ()  # further sbatch options, (name, value): ("account", "proj")
    nproc: int = 1  # processes per machine of a stage job (`bench run --nproc`); above 1, through torchrun

    @property
    def gpus(self) -> int:
        return self.gpus_per_node if self.gpus_per_node is not None else (self.nproc if self.nproc > 1 else 0)


INT_RANGES = {"gpus_per_node": (0, 64), "nodes": (1, 1024), "cpus_per_task": (1, 4096),
              "array_parallelism": (1, 100_000), "nproc": (1, 64)}


def minutes(limit: str) -> float:
    """Slurm's --time (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in minutes."""
    try:
        days, _, rest = limit.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if days:
            hours, mins, secs = (parts + [0, 0])[:3]
        else:
            hours, mins, secs = {1: [0, parts[0], 0], 2: [0, *parts], 3: parts}[len(parts)]
        total = int(days or 0) * 1440 + hours * 60 + mins + secs / 60
    except (ValueError, KeyError):
        raise BenchError(f"--time {limit}: give minutes or [D-]HH:MM:SS, as sbatch --time takes") from None
    if total <= 0:
        raise BenchError(f"--time {limit}: give a time limit above zero")
    return total


def read_config(path: Path) -> dict[str, Any]:
    """A launch config file (TOML, sbatch's names: `partition`, `gpus-per-node`, `cpus-per-task`, `mem`,
    `time`, `nodes`, `array-parallelism`, and a `[sbatch]` table of further options) as LaunchOptions
    fields; a one-line BenchError naming the file and the fix."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BenchError(f"{path}: not a readable TOML launch config ({err}); fix or remove it") from None
    known = {f.name for f in fields(LaunchOptions)} - {"launcher", "nproc"}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            names = ", ".join(sorted(k.replace("_", "-") for k in known))
            raise BenchError(f"{path}: unknown key {key!r}; use {names}")
        if name == "sbatch":
            if not isinstance(value, dict):
                raise BenchError(f"{path}: sbatch must be a table ([sbatch] name = value)")
            value = tuple((str(k), str(v)) for k, v in value.items())
        out[name] = value
    return out


def options(cli: dict[str, Any], config: Path | None) -> LaunchOptions:
    """LaunchOptions from the config file, then the command line's given values (None: not given)."""
    merged = read_config(config) if config is not None else {}
    extra = dict(merged.pop("sbatch", ()))
    for name, value in cli.items():
        if name == "sbatch":
            extra.update(value)
        elif value is not None:
            merged[name] = value
    opts = LaunchOptions(**merged, sbatch=tuple(extra.items()))
    where = f" (in {config})" if config is not None else ""
    for name, (lo, hi) in INT_RANGES.items():
        value = getattr(opts, name)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not (whole and lo <= value <= hi):
            flag = "--" + name.replace("_", "-")
            raise BenchError(f"{flag} {value}{where}: give a whole number in [{lo}, {hi}]")
    for name in ("partition", "mem", "time"):
        value = getattr(opts, name)
        if value is not None and not isinstance(value, str):
            raise BenchError(f"{name} {value!r}{where}: give it as a string, as sbatch takes it")
    if opts.time is not None:
        minutes(opts.time)
    if opts.launcher not in LAUNCHERS:
        raise BenchError(f"--launcher {opts.launcher}: choose local or slurm")
    if opts.launcher == "local" and opts.nodes > 1:
        raise BenchError(f"--nodes {opts.nodes}: the local launcher has one machine; use --launcher slurm")
    return opts


def slurm_parameters(opts: LaunchOptions) -> dict[str, Any]:
    """What submitit's SlurmExecutor is given for every job of the grid (sbatch's names, underscored)."""
    params: dict[str, Any] = {"nodes": opts.nodes, "ntasks_per_node": 1, "cpus_per_task": opts.cpus_per_task,
                              # None leaves the line out (submitit would write its own 5 minutes)
                              "time": opts.time, "array_parallelism": opts.array_parallelism,
                              "additional_parameters": {"kill-on-invalid-dep": "yes", **dict(opts.sbatch)}}
    for name in ("partition", "mem"):
        if getattr(opts, name) is not None:
            params[name] = getattr(opts, name)
    if opts.gpus:
        params["gpus_per_node"] = opts.gpus
    return params


def _submitit() -> Any:
    """The optional `submitit` package (`pip install -e ".[cluster]"`)."""
    try:
        import submitit  # late: an optional extra, needed only by --launcher
    except ImportError:
        raise BenchError('--launcher needs submitit: pip install -e ".[cluster]"') from None
    return submitit


def new_grid_folder(store: Path, launcher: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = store / "jobs" / f"{stamp}-{launcher}-{os.getpid()}"
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    return folder


def _record(node: Node, job_id: str, deps: list[str], job: Any) -> dict[str, Any]:
    return {"node": node.name, "kind": node.kind, "label": node.label, "job_id": job_id,
            "deps": deps, "dep_nodes": list(node.deps), "done_path": node.done_path,
            "stdout": str(job.paths.stdout) if job is not None else None,
            "stderr": str(job.paths.stderr) if job is not None else None, "state": "queued"}


def write_ledger(folder: Path, launcher: str, jobs: list[dict], graph: Graph) -> None:
    """The ledger; each job's done file relative to the store (`runs/jobs/<grid>/` is two floors down), so
    a store moved or copied elsewhere still reads."""
    store = folder.parents[1].resolve()
    jobs = [{**j, "done_path": _relative(j["done_path"], store)} for j in jobs]
    atomic_write_json(folder / LEDGER, {"launcher": launcher, "pid": os.getpid(), "jobs": jobs,
                                        "stored": [n.name for n in graph.stored()]})


def _relative(path: str, store: Path) -> str:
    full = Path(path).resolve()
    return str(full.relative_to(store)) if full.is_relative_to(store) else path


def submit_slurm(graph: Graph, opts: LaunchOptions, folder: Path, store: Path) -> list[dict]:
    """Submit the graph's nodes (module docstring); the ledger's job records, dependencies first."""
    submitit = _submitit()
    executor = submitit.SlurmExecutor(folder=folder / "logs", max_num_timeout=0)
    params = slurm_parameters(opts)
    alive = {j["node"]: j["job_id"] for j in active_jobs(store)}
    todo = [n for n in graph.todo() if n.name not in alive]
    ids = dict(alive)
    records: list[dict] = []
    first = [n for n in todo if not any(d in ids or d in {m.name for m in todo} for d in n.deps)]
    if first:
        executor.update_parameters(**params, job_name="bench-grid")
        jobs = executor.map_array(run_node, [_job(n, opts) for n in first])
        for node, job in zip(first, jobs, strict=True):
            ids[node.name] = job.job_id
            records.append(_record(node, job.job_id, [], job))
    for node in todo:
        if node.name in ids:
            continue
        deps = [ids[d] for d in node.deps]
        executor.update_parameters(**params, job_name=f"bench-{node.name}"[:60],
                                   dependency="afterok:" + ":".join(deps))
        job = executor.submit(run_node, _job(node, opts))
        ids[node.name] = job.job_id
        records.append(_record(node, job.job_id, deps, job))
    return records


def _job(node: Node, opts: LaunchOptions, cores: tuple[int, ...] = ()) -> Job:
    stage = node.kind == "stage"
    return Job(node, nproc=opts.nproc if stage else 1, nodes=opts.nodes if stage else 1, cores=cores)


def core_slots(cpus_per_task: int) -> list[tuple[int, ...]]:
    """The local launcher's K disjoint core sets of `cpus_per_task` cores (K >= 1) among the usable ones."""
    usable = sorted(os.sched_getaffinity(0))
    k = max(1, len(usable) // cpus_per_task)
    return [tuple(usable[i * cpus_per_task:(i + 1) * cpus_per_task]) or tuple(usable) for i in range(k)]


@dataclass
class _Local:
    """The local launcher's bookkeeping: each node's record, and the running submitit jobs."""

    records: dict[str, dict]
    running: dict[str, tuple[Any, tuple[int, ...]]]  # node -> (job, its cores)
    free: list[tuple[int, ...]]


def run_local(graph: Graph, opts: LaunchOptions, folder: Path, echo: Callable[[str], None]) -> list[dict]:
    """Run the graph here, K jobs at once (module docstring); the ledger's records, kept up to date in
    `folder` as jobs start and end."""
    submitit = _submitit()
    executor = submitit.LocalExecutor(folder=folder / "logs", max_num_timeout=0)
    executor.update_parameters(timeout_min=minutes(opts.time) if opts.time else NO_LIMIT_MIN,
                               gpus_per_node=opts.gpus)
    todo = graph.todo()
    state = _Local({n.name: _record(n, "", [], None) for n in todo}, {}, core_slots(opts.cpus_per_task))
    echo(f"running {len(todo)} jobs here, {len(state.free)} at once ({opts.cpus_per_task} cores each)")
    def start(node: Node, cores: tuple[int, ...]) -> Any:
        return executor.submit(run_node, _job(node, opts, cores))

    try:
        while _step(todo, state, start, echo):
            write_ledger(folder, "local", list(state.records.values()), graph)
            time.sleep(POLL_S)
    finally:
        for job, _ in state.running.values():  # interrupted: no job outlives its launcher
            job.cancel(check=False)
        write_ledger(folder, "local", list(state.records.values()), graph)
    return list(state.records.values())


def _step(todo: list[Node], state: _Local, start: Callable[[Node, tuple[int, ...]], Any],
          echo: Callable[[str], None]) -> bool:
    """Collect finished jobs, start the ready ones; False when nothing is left to run or wait for."""
    for name, (job, cores) in list(state.running.items()):
        if not job.done():
            continue
        del state.running[name]
        state.free.append(cores)
        rec = state.records[name]
        error = job.exception()
        rec["state"] = "done" if error is None and node_done(rec["done_path"]) else "failed"
        if rec["state"] == "failed":
            rec["why"] = _error_line(error)
        echo(f"{rec['state']}: {rec['label']} (job {rec['job_id']})"
             + (f"; log {rec['stderr']}" if rec["state"] == "failed" else ""))
        if rec["state"] == "failed":
            _fail_dependents(name, todo, state.records, echo)
    for node in todo:
        rec = state.records[node.name]
        if rec["state"] != "queued" or not state.free:
            continue
        if all(state.records[d]["state"] == "done" for d in node.deps):
            cores = state.free.pop(0)
            job = start(node, cores)
            state.running[node.name] = (job, cores)
            rec.update(state="running", job_id=job.job_id, stdout=str(job.paths.stdout),
                       stderr=str(job.paths.stderr),
                       deps=[state.records[d]["job_id"] for d in node.deps])
            echo(f"started: {node.label} (job {job.job_id}, cores {','.join(map(str, cores))})")
    return bool(state.running)


def _error_line(error: BaseException | None) -> str:
    """The exception line of a failed job's traceback (submitit wraps it with the log paths)."""
    if error is None:
        return "the job ended without storing its output"
    found = re.findall(r"^[\w.]+(?:Error|Exception|Interrupt|Exit)\b.*$", str(error), re.M)
    return (found[-1] if found else str(error).strip().splitlines()[0])[:300]


def _fail_dependents(name: str, todo: list[Node], records: dict[str, dict],
                     echo: Callable[[str], None]) -> None:
    """A failed node fails the queued nodes that depend on it, transitively; nothing else."""
    failed = {name}
    for node in todo:  # dependencies come first, so one pass reaches every descendant
        if records[node.name]["state"] == "queued" and failed & set(node.deps):
            failed.add(node.name)
            records[node.name].update(state="failed", why="a job it depends on failed")
            echo(f"not run: {node.label} (a job it depends on failed)")


def ledgers(store: Path) -> list[Path]:
    """Every grid's ledger in the store, oldest first."""
    return sorted((store / "jobs").glob(f"*/{LEDGER}"))


def _squeue() -> dict[str, str]:
    """{job id: Slurm state} of the jobs Slurm still holds (array tasks one by one)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BenchError(f"squeue: {err}; run bench status where Slurm's commands work") from None
    if out.returncode != 0:
        raise BenchError(f"squeue failed: {out.stderr.strip()[:200]}; run bench status where Slurm answers")
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def job_states(ledger: Path, queue: dict[str, str] | None = None) -> list[dict]:
    """The ledger's job records, each with its `state` now (queued, running, done, failed) and, for a
    failed one, `why` and its log (module docstring)."""
    data = read_json(ledger)
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise BenchError(f"{ledger}: not a job ledger; delete its folder")
    slurm = data.get("launcher") == "slurm"
    if slurm and queue is None:
        queue = _squeue()
    out = []
    for rec in data["jobs"]:
        rec = dict(rec, done_path=str(ledger.parents[2] / rec["done_path"]))  # an absolute path stays
        if node_done(rec["done_path"]):
            rec["state"] = "done"
        elif slurm and rec["job_id"] in (queue or {}):
            rec["state"] = SLURM_ACTIVE.get(queue[rec["job_id"]], "running")
        elif slurm or not _alive(data.get("pid")) or rec.get("state") == "failed":
            rec["state"] = "failed"
            started = rec.get("stderr") and Path(rec["stderr"]).exists()
            rec.setdefault("why", "see its log" if started else "never started (cancelled, or a job it "
                                                                  "depends on failed)")
        out.append(rec)
    return out


def active_jobs(store: Path) -> list[dict]:
    """Slurm jobs of earlier submissions still queued or running (resubmitting does not duplicate them)."""
    paths = [p for p in ledgers(store) if (read_json(p) or {}).get("launcher") == "slurm"]
    if not paths:
        return []
    queue = _squeue()
    return [j for p in paths for j in job_states(p, queue) if j["state"] in ("queued", "running")]


def launch(graph: Graph, opts: LaunchOptions, store: Path, echo: Callable[[str], None]) -> Path:
    """Submit (Slurm) or run (local) the graph's missing nodes; the grid's folder (its ledger and logs)."""
    for node in graph.stored():
        echo(f"in the store: {node.label}")
    if not graph.todo():
        echo("every stage and result of this grid is in the store; nothing to run")
    folder = new_grid_folder(store, opts.launcher)
    if opts.launcher == "slurm":
        records = submit_slurm(graph, opts, folder, store)
        write_ledger(folder, "slurm", records, graph)
        for rec in records:
            after = f" after {','.join(rec['deps'])}" if rec["deps"] else ""
            echo(f"submitted {rec['job_id']}{after}: {rec['label']}")
        echo(f"jobs: {folder / LEDGER} (bench status --runs-dir {store})")
        return folder
    write_ledger(folder, "local", [], graph)
    records = run_local(graph, replace(opts, nodes=1), folder, echo)
    echo(f"jobs: {folder / LEDGER} (bench status --runs-dir {store})")
    failed = [r for r in records if r["state"] != "done"]
    if failed:
        raise BenchError(f"{len(failed)} of {len(records)} jobs failed or did not run (bench status "
                         f"--runs-dir {store} names their logs); the same command runs only what is missing")
    return folder
