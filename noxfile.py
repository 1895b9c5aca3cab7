"""nox sessions: `tests` (the suite), `lint` (ruff), `smoke` (every verb end to end on the smoke profile).

Sessions reuse the project's pip install so torch comes from the local build (see README).
"""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev,cluster]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def smoke(session: nox.Session) -> None:
    """Every verb once on the smoke profile, in a scratch folder."""
    session.install("-e", ".[dev]")
    tmp = session.create_tmp()
    data, runs = f"{tmp}/datasets", f"{tmp}/runs"
    common = ["--profile", "smoke", "--data-dir", data]
    session.run("bench", "prepare", *common)
    session.run("bench", "run", "--method", "ours", *common, "--runs-dir", runs)
    session.run("bench", "ablate", "--only", "ours-no-tv", "--seeds", "0", *common, "--runs-dir", runs)
    session.run("bench", "report", "--runs-dir", runs, "--out", f"{tmp}/reports")
    session.run("bench", "infer", f"{data}/synthetic-smoke-9f/blur/*/w000.png", "--runs-dir", runs,
                "--out", f"{tmp}/infer")
    session.run("bench", "perf", "--profile", "smoke", "--resolution", "64x64", "--repeats", "2")
    session.run("bench", "list", "--data-dir", data, "--runs-dir", runs)
    session.run("bench", "status", "--runs-dir", runs)
