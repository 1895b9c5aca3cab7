"""bench/launch.py and bench/grid.py: the stage graph of a grid, its jobs on a real one-node Slurm
(tests/slurm.py) and on the local executor, the options, and the sbatch and torchrun commands a job gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import THREAD_ENV

from bench.errors import BenchError
from bench.grid import Graph, Node, build_graph, hostnames, torchrun_command
from bench.launch import LaunchOptions, job_states, ledgers, minutes, options, run_local, slurm_parameters
from bench.run import RunSpec, execute

pytest.importorskip("submitit", reason="submitit not installed (pip install -e '.[cluster]')")

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
GRID_S = 900  # the smoke grid through Slurm: about 1.5 minutes on a loaded 2-core machine


def test_time_limits_in_sbatch_forms() -> None:
    assert minutes("90") == 90 and minutes("1:30:00") == 90 and minutes("1-00:00:00") == 1440
    assert minutes("2:30") == pytest.approx(2.5) and minutes("1-2") == 1560
    for bad in ("", "soon", "0", "1:2:3:4"):
        with pytest.raises(BenchError, match="--time"):
            minutes(bad)


def test_options_from_a_config_file_then_the_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "launch.toml"
    conf.write_text('partition = "gpu"\ngpus-per-node = 2\ntime = "4:00:00"\n[sbatch]\naccount = "proj"\n')
    opts = options({"launcher": "slurm", "partition": "debug", "gpus_per_node": None,
                    "sbatch": [("qos", "high")]}, conf)
    assert (opts.partition, opts.gpus, opts.time) == ("debug", 2, "4:00:00")  # the command line wins
    assert dict(opts.sbatch) == {"account": "proj", "qos": "high"}
    conf.write_text("partion = 'gpu'\n")
    with pytest.raises(BenchError, match=r"launch.toml: unknown key 'partion'; use .*partition"):
        options({"launcher": "slurm"}, conf)
    conf.write_text("nodes = 0\n")
    with pytest.raises(BenchError, match=r"--nodes 0 \(in .*launch.toml\): give a whole number in \[1, "):
        options({"launcher": "slurm"}, conf)
    with pytest.raises(BenchError, match="--nodes 2: the local launcher has one machine"):
        options({"launcher": "local", "nodes": 2}, None)


@pytest.mark.parametrize(("args", "said"), [
    (["run", "--partition", "gpu"], "--partition: set how jobs run; add --launcher local or"),
    (["run", "--launcher", "slurm", "--explain"], "--launcher runs the grid as jobs: leave out --explain"),
    (["run", "--launcher", "local", "--sbatch", "oops"], "--sbatch oops: give NAME=VALUE"),
    (["run", "--launcher", "slurm", "--time", "soon"], "--time soon: give minutes or [D-]HH:MM:SS"),
    (["ablate", "--launcher", "local", "--nodes", "2"], "--nodes 2: the local launcher has one machine"),
    (["run", "--method", "ours,srn", "--weights", "w.pt"], "--weights and --dry-run take one method"),
])
def test_launch_options_are_checked_before_any_work(args: list[str], said: str) -> None:
    from click.testing import CliRunner

    from bench.cli import cli

    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, BenchError) and said in str(result.exception)


def test_a_job_asks_slurm_for_its_gpus_and_nodes() -> None:
    params = slurm_parameters(LaunchOptions(launcher="slurm", nproc=4, nodes=2, partition="gpu", mem="64G",
                                            sbatch=(("account", "proj"),)))
    assert params["gpus_per_node"] == 4 and params["nodes"] == 2 and params["ntasks_per_node"] == 1
    assert params["partition"] == "gpu" and params["mem"] == "64G"
    assert params["additional_parameters"] == {"kill-on-invalid-dep": "yes", "account": "proj"}
    plain = slurm_parameters(LaunchOptions(launcher="slurm"))
    assert "gpus_per_node" not in plain and plain["time"] is None  # no GPU, the partition's time limit


def test_torchrun_gets_the_rendezvous_from_slurms_environment() -> None:
    assert hostnames("gpu[07-09,11],login2") == ["gpu07", "gpu08", "gpu09", "gpu11", "login2"]
    spec = RunSpec(method="ours", profile="paper", frames=7, seed=1)
    one = torchrun_command(spec, "bie", 4, 1, {})
    assert one[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node=4", "--standalone"]
    assert one[-3:-1] == ["bench.grid", "bie"] and json.loads(one[-1])["seed"] == 1
    env = {"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}
    two = torchrun_command(spec, "bie", 8, 2, env)
    assert {"--nnodes=2", "--nproc_per_node=8", "--rdzv_backend=c10d", "--rdzv_endpoint=gpu07:29400",
            "--rdzv_id=4242"} <= set(two) and "--standalone" not in two
    with pytest.raises(BenchError, match="SLURM_JOB_NODELIST"):
        torchrun_command(spec, "bie", 8, 2, {})


def _stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: str = "") -> Path:
    """`sbatch` that keeps each script it is given (caught/<k>.sh) and answers job id 100 + k, and `squeue`
    that prints `queue`, first on the PATH; the folder of caught scripts."""
    caught, bin_dir = tmp_path / "caught", tmp_path / "bin"
    caught.mkdir()
    bin_dir.mkdir()
    scripts = {"sbatch": f"n=$(ls {caught} | wc -l)\ncp \"$1\" {caught}/$n.sh\n"
                         "echo Submitted batch job $((n + 100))\n",
               "squeue": f"printf '{queue}'\n"}
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return caught


def test_the_sbatch_script_of_a_multi_gpu_stage_job(data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What `--launcher slurm --nproc 4 --nodes 2` hands sbatch, caught by a stand-in sbatch on the PATH."""
    from bench.launch import submit_slurm

    caught = _stand_ins(tmp_path, monkeypatch)
    spec = RunSpec(method="ours", profile="smoke", frames=7, data_dir=data, runs_dir=tmp_path / "runs")
    graph = build_graph([spec], log=lambda _: None)
    opts = LaunchOptions(launcher="slurm", nproc=4, nodes=2, partition="gpu", time="2:00:00")
    records = submit_slurm(graph, opts, tmp_path / "grid", tmp_path / "runs")
    scripts = [p.read_text() for p in sorted(caught.iterdir(), key=lambda p: int(p.stem))]
    assert [r["label"].split()[0] for r in records] == ["dm", "autoencoder", "bie", "score"]
    array, bie = scripts[0], scripts[1]
    assert "#SBATCH --array=0-1%2" in array  # dm and autoencoder need nothing first: one array
    for line in ("--gpus-per-node=4", "--nodes=2", "--ntasks-per-node=1", "--partition=gpu", "--time=2:00:00",
                 "--kill-on-invalid-dep=yes", "--dependency=afterok:100_1"):
        assert f"#SBATCH {line}" in bie
    assert records[3]["deps"] == ["100_0", "100_1", "101"]


def test_a_job_still_queued_from_before_is_not_submitted_again(data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.launch import launch

    caught = _stand_ins(tmp_path, monkeypatch, queue="7_1|RUNNING\\n")
    runs = tmp_path / "runs"
    graph = build_graph([RunSpec(method="ours", profile="smoke", frames=7, data_dir=data, runs_dir=runs)],
                        log=lambda _: None)
    ae = next(n for n in graph.todo() if n.stage == "autoencoder")
    earlier = runs / "jobs" / "earlier" / "jobs.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(json.dumps({"launcher": "slurm", "jobs": [
        {"node": ae.name, "kind": "stage", "label": ae.label, "job_id": "7_1", "deps": [], "dep_nodes": [],
         "done_path": ae.done_path, "stdout": None, "stderr": None}]}))
    said: list[str] = []
    folder = launch(graph, LaunchOptions(launcher="slurm"), runs, said.append)
    jobs = {j["label"].split()[0]: j for j in json.loads((folder / "jobs.json").read_text())["jobs"]}
    assert "autoencoder" not in jobs  # running from the earlier submission
    assert jobs["bie"]["deps"] == ["7_1"] and set(jobs["score"]["deps"]) == {jobs["dm"]["job_id"], "7_1",
                                                                           jobs["bie"]["job_id"]}
    assert [j["state"] for j in job_states(earlier)] == ["running"]
    assert not any("--time" in p.read_text() for p in caught.iterdir())  # the partition's own limit


def _score_node(name: str, method: str, deps: tuple[str, ...], done: Path, spec: RunSpec) -> Node:
    return Node(name, "score", RunSpec(method=method, **{k: getattr(spec, k) for k in
                                                         ("profile", "frames", "data_dir", "runs_dir")}),
                None, deps, False, str(done), f"{name} ({method})")


@pytest.mark.slow
def test_a_failed_local_job_fails_only_its_dependents(data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    spec = RunSpec(method="blurred", profile="smoke", frames=7, data_dir=data, runs_dir=runs)
    nowhere = tmp_path / "never" / "metrics.json"
    blurred = build_graph([spec], log=lambda _: None).todo()[0]
    broken = _score_node("broken", "no-such-method", (), nowhere, spec)
    after = _score_node("after", "blurred", ("broken",), nowhere, spec)
    graph = Graph({n.name: n for n in (broken, after, blurred)})
    folder = runs / "jobs" / "grid"
    (folder / "logs").mkdir(parents=True)
    said: list[str] = []
    records = {r["node"]: r for r in run_local(graph, LaunchOptions(time="10"), folder, said.append)}
    assert records["broken"]["state"] == "failed" and "no-such-method" in records["broken"]["why"]
    assert records["after"]["state"] == "failed" and records["after"]["job_id"] == ""  # never started
    assert records[blurred.name]["state"] == "done"
    states = {j["node"]: j for j in job_states(folder / "jobs.json")}
    assert states["broken"]["state"] == "failed" and Path(states["broken"]["stderr"]).is_file()
    assert states[blurred.name]["state"] == "done"
    from bench.commands.report import _grid_note

    assert "has jobs not done (2 failed)" in _grid_note(runs)  # what bench report adds to its summary


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """A one-node Slurm on this host (tests/slurm.py), for this module's tests; skipped with the reason when
    its packages cannot be had here."""
    from slurm import LocalSlurm, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _quality(values: dict) -> dict:
    """Everything but the timings, which differ from run to run."""
    return {k: v for k, v in values.items() if not k.startswith("runtime")}


def _bench(cluster, *args: str) -> subprocess.CompletedProcess:
    env = {**cluster.env, **THREAD_ENV, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*BENCH, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_a_smoke_grid_through_sbatch(slurm, smoke_data: Path, tmp_path: Path) -> None:
    """2 methods x 2 seeds sharing each seed's DM: submitted once, the scores of both depend on it; the
    metrics equal a sequential run's; the same command again submits nothing."""
    runs = tmp_path / "runs"
    grid = ["run", "--method", "ours,ours-static", "--seeds", "0,1", "--profile", "smoke", "--frames", "7",
            "--no-floor", "--data-dir", str(smoke_data), "--runs-dir", str(runs), "--launcher", "slurm"]
    done = _bench(slurm, *grid)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + GRID_S
    while slurm.run("squeue", "-h").strip() and time.monotonic() < deadline:
        time.sleep(1)
    jobs = job_states(ledgers(runs)[-1], queue={})
    status = _bench(slurm, "status", "--runs-dir", str(runs)).stdout
    assert [j["state"] for j in jobs] == ["done"] * 10, status
    dms = [j for j in jobs if j["label"].startswith("dm of")]
    assert len(dms) == 2  # one DM job per seed, shared by ours and ours-static
    for dm in dms:
        seed = dm["label"].split()[-1]
        scores = [j for j in jobs if j["label"].startswith("score") and j["label"].endswith(f"seed {seed}")]
        assert len(scores) == 2 and all(dm["job_id"] in s["deps"] for s in scores)
    for method in ("ours", "ours-static"):  # seed 0 of each, run one after the other in this process
        local = execute(RunSpec(method=method, profile="smoke", frames=7, seed=0, data_dir=smoke_data,
                                runs_dir=tmp_path / "sequential", progress=False), log=lambda *_: None)
        stored = json.loads((runs / local.path.name / "metrics.json").read_text())
        assert _quality(stored["aggregate"]) == _quality(local.metrics.aggregate)
        assert [_quality(s) for s in stored["samples"]] == [_quality(s) for s in local.metrics.samples]
    again = _bench(slurm, *grid)
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert json.loads(ledgers(runs)[-1].read_text())["jobs"] == []
