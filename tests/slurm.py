"""A real one-node Slurm for the tests: Debian's `slurm-wlm` and `munge`, installed with apt where missing,
configured for this host in a private folder and started as three processes this module owns.

`LocalSlurm.start` writes a `slurm.conf` (SlurmctldHost = this host's name, one node with CPUs=2, accounting
off so that `squeue` and `scontrol` answer without a database, state, spool and logs in the folder, free
ports), a private munge key and socket, then starts `munged`, `slurmctld` and `slurmd` in the foreground of
processes it holds; `stop` ends exactly those, by their process ids, never by name. Clients find the cluster
through `SLURM_CONF` (`env`). `unavailable()` says in one line why no Slurm can be had here (no apt, not
root), or None.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = {"sbatch": "slurm-wlm", "slurmctld": "slurmctld", "slurmd": "slurmd", "munged": "munge"}
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
APT_TIMEOUT_S = 900  # a fresh CI machine downloads about 20 packages


def _missing() -> list[str]:
    return sorted({pkg for tool, pkg in PACKAGES.items()
                   if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()})


def install() -> str | None:
    """apt-get install the packages that are missing (idempotent); a one-line reason when that cannot be
    done here, else None."""
    missing = _missing()
    if not missing:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"Slurm packages {', '.join(missing)} missing and no apt-get as root to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"{' '.join(cmd[:2])} failed: {tail[0]}"
    return None if not _missing() else f"still missing after apt-get: {', '.join(_missing())}"


def unavailable() -> str | None:
    """Why a Slurm cannot be started here (one line), or None."""
    if os.geteuid() != 0:
        return "starting slurmd needs root (it launches jobs as their owners)"
    return install()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=bmbtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
KillWait=2
PropagatePrioProcess=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
NodeName={host} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """munged, slurmctld and slurmd for this host, configured and logging under `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60) -> None:
        d = self.folder
        for sub in ("state", "spool"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        host = socket.gethostname()
        self.conf.write_text(SLURM_CONF.format(host=host, dir=d, ctld_port=_free_port(),
                                               slurmd_port=_free_port()))
        self._spawn("munged", ["/usr/sbin/munged", "-F", "--force", f"--key-file={key}",
                               f"--socket={d}/munge.socket", f"--pid-file={d}/munged.pid",
                               f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"])
        self._wait(lambda: (d / "munge.socket").exists(), timeout_s, "munged", d / "munged.log")
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, timeout_s, "slurmd", d / "slurmd.log")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.folder / f"{name}.stdio", "wb")  # noqa: SIM115 (closed with the process's end)
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() in ("idle", "mix")

    def _wait(self, ready, timeout_s: float, what: str, log: Path) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
                self.stop()
                why = ", ".join(dead) or "timeout"
                raise RuntimeError(f"{what} did not come up ({why}): {' | '.join(tail)}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate the daemons this object started (slurmd first), by process id; kill any that linger."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()

    def run(self, *cmd: str) -> str:
        """A Slurm client command against this cluster; its stdout."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=True).stdout
