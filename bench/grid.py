"""The stage graph of a grid of runs: what `bench run --launcher` and `bench ablate --launcher` submit.

The unit of work is a stage, not a run (docs/DESIGN.md "Stage graph"). A grid (methods x N x seeds) needs
each run's stages, keyed as `bench.train.stage_keys` keys them, and one scoring job per run. A stage shared by
several runs (the DM of `ours` and of every ablation that keeps it) has one key, so it is one node. A stage
node depends on the stages its `init_from` names; a scoring node on every stage of its run. Whatever is
already in the store is left out: a finished stage folder, and a run whose result `bench run` would reuse
(`bench.run.stored_result`) together with the stages only it needed. So the jobs only ever wait for their
dependencies, never on a lock held by a training elsewhere: the stage folders a job opens are finished
before it starts, and reusing one holds its lock for milliseconds.

A node runs through `run_node` (the one function every job calls): a stage trains with `bench.train`'s
`train_stage`, its `init_from` chain reused from the store; a score is `bench.run.execute`, every stage
reused. A stage job given several GPUs launches torchrun (`torchrun_command`), whose processes run this
module as a program (`python -m bench.grid STAGE SPEC-JSON`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as td

from bench.config import resolve_profile
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.fileio import read_json
from bench.registry import get_method
from bench.run import RunSpec, _data, execute, identity, stored_result
from bench.store import METRICS, runs_dir
from bench.train import CKPT, LOCAL, STAGE_JSON, dist_from_env, stage_keys, train_stage

if TYPE_CHECKING:
    from methods.registry import MethodAPI

RDZV_PORT = 29400  # torchrun's c10d rendezvous port on a multi-node job's first node (torchrun's default)


@dataclass(frozen=True)
class Node:
    """One job of the grid: a stage to train or a run to score."""

    name: str  # the stage's key (`dm-<hash12>`) or the run's id: unique in the graph
    kind: str  # "stage" | "score"
    spec: RunSpec  # the run it belongs to (a shared stage: the first run that needs it)
    stage: str | None  # the stage's name (a stage node)
    deps: tuple[str, ...]  # names of the nodes that must finish first
    stored: bool  # already in the store: not submitted
    done_path: str  # the file whose finished state says the node is done (stage.json or metrics.json)
    label: str  # one line for people: "dm of ours N=9 seed 0"


@dataclass
class Graph:
    """The nodes of a grid in an order where every node comes after its dependencies."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def todo(self) -> list[Node]:
        """The nodes to submit, dependencies first; their deps name only nodes also to submit."""
        return [replace(n, deps=tuple(d for d in n.deps if not self.nodes[d].stored))
                for n in self.nodes.values() if not n.stored]

    def stored(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.stored]


def stage_stored(folder: Path) -> bool:
    """A finished stage folder (what `bench.train.StageRun.reuse` takes as it is)."""
    info = read_json(folder / STAGE_JSON)
    return isinstance(info, dict) and info.get("status") == "finished" and (folder / CKPT).is_file()


def node_done(done_path: str | Path) -> bool:
    """Whether a node's output is in the store: its stage.json or metrics.json says finished (a stage also
    needs its checkpoint)."""
    path = Path(done_path)
    return stage_stored(path.parent) if path.name == STAGE_JSON else \
        (read_json(path) or {}).get("status") == "finished"


def build_graph(specs: Iterable[RunSpec], log: Callable[[str], None] = print) -> Graph:
    """The stage graph of these runs (module docstring). Each training set is prepared here first, when it
    is not yet: the keys follow its content."""
    graph = Graph()
    said: set[str] = set()

    def once(line: str) -> None:  # the runs of a grid share their sets: say each set's check once
        if line not in said:
            said.add(line)
            log(line)

    for spec in specs:
        if spec.weights is not None or spec.fresh:
            raise BenchError("--launcher: --weights and --fresh are one job each; leave out --launcher")
        _add_run(graph, replace(spec, progress=False), once)
    return graph


def _add_run(graph: Graph, spec: RunSpec, log: Callable[[str], None]) -> None:
    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec.profile, spec.overrides)
    device = resolve_device(spec.device or profile.train.device)
    store = runs_dir(spec.runs_dir)
    with ExitStack() as reading:
        set_folder, eval_folder = _data(spec, profile, LOCAL, log, reading)
        ident = identity(spec, method, profile, set_folder, eval_folder, device)
        keys = stage_keys(method, profile, set_folder, spec.seed, device)
    folder = store / ident.run_id
    out_dir = folder / "evals" / ident.evals_folder if ident.evals_folder else folder
    scored = stored_result(spec, folder, out_dir, ident, log) is not None
    where = f"{method.name} N={spec.frames} seed {spec.seed}"
    if not scored:
        for stage in method.stages:
            key = keys[stage.name][0]
            if key not in graph.nodes:
                done = store / "stages" / key / STAGE_JSON
                graph.nodes[key] = Node(key, "stage", spec, stage.name,
                                        tuple(keys[n][0] for n in stage.init_from), stage_stored(done.parent),
                                        str(done), f"{stage.name} of {where}")
    name = ident.run_id + (f"/{ident.evals_folder}" if ident.evals_folder else "")
    graph.nodes[name] = Node(name, "score", spec, None, tuple(keys[s.name][0] for s in method.stages),
                             scored, str(out_dir / METRICS), f"score {where}")


@dataclass(frozen=True)
class Job:
    """What one submitted job runs: a node, and how many processes and nodes a stage gets."""

    node: Node
    nproc: int = 1  # processes per machine (one per GPU); > 1 runs torchrun
    nodes: int = 1  # machines; > 1 takes torchrun's rendezvous from Slurm's environment
    cores: tuple[int, ...] = ()  # local launcher: the cores this job may run on (its threads follow)


def run_node(job: Job) -> str:
    """The function every job calls (submitit pickles it with its `Job`); returns the done file's path."""
    if job.cores:  # `train.threads` 0 then means these cores (bench.execution.resolve_threads)
        os.sched_setaffinity(0, job.cores)
    node = job.node
    if node.kind == "score":
        execute(node.spec, log=_say)
    elif job.nproc > 1 or job.nodes > 1:
        cmd = torchrun_command(node.spec, node.stage, job.nproc, job.nodes, os.environ)
        _say(f"launching: {' '.join(cmd)}")
        code = os.spawnv(os.P_WAIT, cmd[0], cmd)
        if code != 0:
            raise BenchError(f"torchrun for {node.label} exited with status {code}")
    else:
        train_one(node.spec, node.stage)
    # Several machines: each runs this as one task; the first checks, after its torchrun (whose rank 0
    # writes stage.json) has ended.
    if os.environ.get("SLURM_NODEID", "0") == "0" and not node_done(node.done_path):
        raise BenchError(f"{node.label}: the job ended but {node.done_path} is not finished")
    return node.done_path


def _say(line: str) -> None:
    print(line, flush=True)


def _chain(method: MethodAPI, name: str) -> list:
    """The stage `name` and the stages it starts from (its `init_from`, transitively), in method order."""
    stages = {s.name: s for s in method.stages}
    needed, todo = set(), [name]
    while todo:
        current = todo.pop()
        needed.add(current)
        todo += [n for n in stages[current].init_from if n not in needed]
    return [s for s in method.stages if s.name in needed]


def train_one(spec: RunSpec, stage_name: str) -> str:
    """Train one stage of a run (reusing the stored stages it starts from); its key. Under torchrun every
    rank calls this, as `bench run --nproc` does for a whole run."""
    dist = dist_from_env(spec.device or "auto")
    method = get_method(spec.method, spec.frames)
    profile = resolve_profile(spec.profile, spec.overrides)
    device = resolve_device(spec.device or profile.train.device, dist.local_rank)
    stages_dir = runs_dir(spec.runs_dir) / "stages"
    results: dict = {}
    with ExitStack() as reading:
        set_folder, _ = _data(spec, profile, dist, _say, reading)
        for stage in _chain(method, stage_name):
            prior = {n: results[n] for n in stage.init_from}
            results[stage.name] = train_stage(method, stage, profile, set_folder, spec.seed, stages_dir,
                                              device, prior, dist=dist, progress=False, log=_say)
    return results[stage_name].key


def spec_json(spec: RunSpec) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(spec).items()})


def spec_from_json(text: str) -> RunSpec:
    raw = json.loads(text)
    paths = ("data_dir", "runs_dir", "root", "weights")
    raw = {k: Path(v) if k in paths and v is not None else v for k, v in raw.items()}
    return RunSpec(**{**raw, "overrides": tuple(raw["overrides"])})


def torchrun_command(spec: RunSpec, stage: str, nproc: int, nodes: int, env: Mapping[str, str]) -> list[str]:
    """The torchrun command a stage job runs on each of its machines: `nproc` processes here; with several
    machines, the c10d rendezvous on the job's first node, named by the job's id (Slurm's environment:
    SLURM_JOB_NODELIST, SLURM_JOB_ID)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nodes > 1:
        if "SLURM_JOB_NODELIST" not in env or "SLURM_JOB_ID" not in env:
            raise BenchError(f"--nodes {nodes}: the rendezvous comes from Slurm's environment "
                             "(SLURM_JOB_NODELIST, SLURM_JOB_ID); run with --launcher slurm")
        head = hostnames(env["SLURM_JOB_NODELIST"])[0]
        cmd += [f"--nnodes={nodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={head}:{RDZV_PORT}",
                f"--rdzv_id={env['SLURM_JOB_ID']}"]
    else:
        cmd.append("--standalone")
    return [*cmd, "-m", "bench.grid", stage, spec_json(spec)]


def hostnames(nodelist: str) -> list[str]:
    """Slurm's compact node list (`gpu[01-03,07],login2`) as host names, in order."""
    hosts = []
    for prefix, ranges in re.findall(r"([^,\[]+)(?:\[([^\]]+)\])?,?", nodelist):
        if not ranges:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            hosts += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1)]
    return hosts


def _main(argv: list[str]) -> None:
    """A torchrun process of a stage job: `python -m bench.grid STAGE SPEC-JSON`."""
    try:
        train_one(spec_from_json(argv[1]), argv[0])
    finally:
        if td.is_initialized():
            td.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1:])

