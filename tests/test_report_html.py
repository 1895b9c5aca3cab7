"""`bench report --format html` (bench/report/html.py, bench/report/viewer.py; docs/DESIGN.md "Reports"): the
page built from real smoke runs made here, checked as a file (self-contained, every link resolves, the same
sections as README.md) and in headless Chromium (tests/browser.py: no console error, no failed request, the
viewer switches samples and steps frames, the tables sort, the claims filter), with screenshots of the first
screen and of the viewer. Chromium is installed with apt where missing; without it only the browser test
skips, with the reason."""

from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import Browser, find_or_install
from click.testing import CliRunner
from PIL import Image
from records import tiny_smoke_runs

from bench.errors import BenchError
from bench.report import build_report, parse_formats
from bench.report.viewer import choose_samples

SECTIONS = ("provenance", "claims", "floors", "viewer", "missing", "figures", "definitions", "video",
            "deblurring", "runs")


def _bench(*args: str) -> None:
    from bench.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    assert result.exit_code == 0, f"bench {' '.join(args)}: {result.output} {result.exception!r}"


@pytest.fixture(scope="module")
def runs(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real smoke runs of ours at N = 7 and 9 (each also scores `blurred`): two iterations per stage."""
    return tiny_smoke_runs(("ours",), "7,9", smoke_data, tmp_path_factory.mktemp("html-runs"))


@pytest.fixture(scope="module")
def page(runs: Path, smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder with index.html, built by the command as a user runs it."""
    out = tmp_path_factory.mktemp("html-report") / "reports"
    _bench("report", "--runs-dir", str(runs), "--out", str(out), "--format", "md,csv,png,gif,html",
           "--data-dir", str(smoke_data))
    return out


def _viewer_doc(out: Path) -> dict:
    text = (out / "index.html").read_text()
    block = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', text, re.S)
    return json.loads(block[1].replace("<\\/", "</"))


def _links(text: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#][^"]*)"', text)


def test_choose_samples_spreads_ranks_with_worst_and_best() -> None:
    eq6 = pd.Series({"a": 5.0, "b": 9.0, "c": 1.0, "d": float("nan"), "e": 3.0})
    assert choose_samples(eq6, 3) == [("b", 1), ("e", 3), ("d", 5)]  # worst first, NaN (no score) last
    assert [s for s, _ in choose_samples(eq6.dropna(), 2)] == ["b", "c"]  # the worst and the best
    assert len(choose_samples(eq6, 50)) == 5 and choose_samples(eq6, 0) == []


@pytest.mark.slow
def test_page_is_self_contained_with_the_readmes_sections(page: Path) -> None:
    text = (page / "index.html").read_text()
    assert "<link" not in text and "@import" not in text
    assert not re.search(r"""(src|href|url)[=(]["']?(https?:)?//""", text)  # nothing fetched from elsewhere
    for section in SECTIONS:
        assert f'id="{section}"' in text, section
    assert "NOT comparable with the paper's GoPro numbers" in text  # the page, every table and the viewer
    readme = (page / "README.md").read_text()
    assert "[index.html](index.html)" in readme
    for claim in pd.read_csv(page / "tables" / "claims.csv")["claim"]:
        assert html.escape(claim, quote=False) in text, claim
    links = _links(text)
    assert {"figures", "tables"} <= {link.split("/")[0] for link in links}
    for link in links:
        assert (page / link).is_file(), link


@pytest.mark.slow
def test_viewer_shows_every_test_sample_made_again_where_not_stored(page: Path) -> None:
    doc = _viewer_doc(page)
    assert [s["frames"] for s in doc["sets"]] == [7, 9]
    for viewer_set in doc["sets"]:
        assert viewer_set["reference"] == "ours" and set(viewer_set["methods"]) == {"ours", "blurred"}
        ranks = [s["rank"] for s in viewer_set["samples"]]
        assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) == viewer_set["samples"][0]["of"] >= 2
        sources = set()
        for sample in viewer_set["samples"]:
            truth = np.asarray(Image.open(page / sample["truth"]).convert("RGB"))
            assert truth.shape == (sample["height"], sample["width"] * viewer_set["frames"], 3)
            for player in sample["players"].values():
                assert Image.open(page / player["strip"]).size == (truth.shape[1], truth.shape[0])
                sources.add(player["source"])
                if player["source"].startswith("made again"):
                    assert player["note"].startswith("reproduces the stored scores"), player["note"]
        # The smoke profile stores one sample per run; the other is made again from the run's weights (or,
        # for the parameter-free floor, with none).
        assert sources == {"stored by the run", "made again from the run's weights",
                           "made again (no weights to load)"}


@pytest.mark.slow
def test_viewer_without_the_set_says_why_and_keeps_stored_frames(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = build_report(runs, out, parse_formats("md,html"), samples=2, data_dir=tmp_path / "no-data")
    assert result.viewer_problems and all("prepare it" in p for p in result.viewer_problems)
    players = [p for s in _viewer_doc(out)["sets"] for sample in s["samples"]
               for p in sample["players"].values()]
    assert {p["strip"] is None for p in players} == {True, False}
    assert all(p["note"].startswith("no frames") for p in players if p["strip"] is None)
    assert "sample viewer, no frames" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_smaller_viewer_removes_the_strips_it_no_longer_needs(runs: Path, smoke_data: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "reports"
    user = out / "viewer" / "notes.txt"  # a file of the user's inside viewer/ stays
    user.parent.mkdir(parents=True)
    user.write_text("mine")
    two = build_report(runs, out, parse_formats("md,html"), samples=2, data_dir=smoke_data)
    one = build_report(runs, out, parse_formats("md,html"), samples=1, data_dir=smoke_data)
    assert len(one.viewer) < len(two.viewer)
    assert sorted((out / "viewer").rglob("*.webp")) == sorted(one.viewer) and user.read_text() == "mine"


@pytest.mark.slow
def test_a_users_index_html_is_never_replaced(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(BenchError, match="index.html"):
        build_report(runs, out, parse_formats("md,html"), samples=1)
    assert (out / "index.html").read_text() == "mine" and not (out / "README.md").exists()


def test_samples_option_is_bounded(tmp_path: Path) -> None:
    from bench.cli import cli

    result = CliRunner().invoke(cli, ["report", "--runs-dir", str(tmp_path), "--samples", "-1"])
    assert result.exit_code != 0 and "--samples takes" in str(result.exception or result.output)


@pytest.fixture(scope="session")
def chromium() -> str:
    binary, why = find_or_install()
    if binary is None:
        pytest.skip(why)
    return binary


def _shots(tmp_path: Path) -> Path:
    """Where screenshots go: $BENCH_SHOTS when set (for the issue's note), else the test's folder."""
    folder = Path(os.environ.get("BENCH_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_browser_check_sees_errors_and_broken_links(chromium: str, tmp_path: Path) -> None:
    """The checks below can fail: a missing image, a console error and an uncaught exception are each seen."""
    (tmp_path / "bad.html").write_text('<img src="missing.png"><script>console.error("seen"); nothing();'
                                       "</script>")
    b = Browser(chromium, tmp_path / "profile")
    try:
        b.open((tmp_path / "bad.html").as_uri())
        time.sleep(0.3)
        found = b.problems()
    finally:
        b.close()
    assert any(p.startswith("request failed") for p in found), found
    assert any("console.error" in p and "seen" in p for p in found), found
    assert any(p.startswith("exception") and "nothing" in p for p in found), found


def _viewer_state(b: Browser) -> dict:
    return b.js("""(() => ({note: document.getElementById('v-sample-note').textContent,
        frames: [...document.querySelectorAll('#v-players .sprite')].map(s => s.getAttribute('data-frame')),
        positions: [...document.querySelectorAll('#v-players .sprite')].map(s => s.style.backgroundPosition),
        images: [...document.querySelectorAll('#v-players .sprite')].map(s => s.style.backgroundImage),
        label: document.getElementById('v-frame-label').textContent}))()""")


@pytest.mark.slow
def test_page_in_a_real_browser(page: Path, chromium: str, tmp_path: Path) -> None:
    b = Browser(chromium, tmp_path / "profile")
    try:
        b.open((page / "index.html").as_uri())
        time.sleep(0.5)  # let late image decodes report
        shots = _shots(tmp_path)
        assert b.screenshot(shots / "report_first_screen.png").stat().st_size > 10_000
        # Every URL the page and its script name resolves to a file beside it; nothing leaves file://.
        urls = b.js("""[...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href)
            .concat([...document.querySelectorAll('.sprite')].map(s => s.style.backgroundImage
            .replace(/^url\\("?|"?\\)$/g, '')).filter(u => u).map(u => new URL(u, location.href).href))""")
        local = [u for u in urls if not u.startswith((page / "index.html").as_uri() + "#")]
        assert local and all(u.startswith("file://") for u in local), local
        for url in local:
            assert Path(url.removeprefix("file://")).is_file(), url
        assert all(u.startswith("file://") for u in b.requested())

        before = _viewer_state(b)
        assert before["label"] == "frame 1 / 7" and set(before["frames"]) == {"0"}
        b.js("document.getElementById('v-next').click()")
        after = _viewer_state(b)
        assert after["note"] != before["note"] and after["images"] != before["images"]
        b.js("const s = document.getElementById('v-frame'); s.value = 3; s.dispatchEvent(new Event('input'))")
        stepped = _viewer_state(b)
        assert stepped["label"] == "frame 4 / 7" and set(stepped["frames"]) == {"3"}
        assert {p.split()[0] for p in stepped["positions"]} == {"50%"}  # frame 4 of 7: halfway along
        b.js("document.getElementById('viewer').scrollIntoView()")
        b.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft'}))")
        assert set(_viewer_state(b)["frames"]) == {"2"}  # the arrow keys step too
        b.js("document.getElementById('v-play').click()")
        time.sleep(0.7)
        b.js("document.getElementById('v-play').click()")
        assert _viewer_state(b)["frames"][0] != "2"  # playing moved every player on together
        assert len(set(_viewer_state(b)["frames"])) == 1
        b.js("document.querySelector('#v-methods input').click()")  # hide the first method
        assert b.js("document.querySelector('#v-players [data-method=\"ours\"]').hidden") is True
        b.js("const v = document.getElementById('v-set'); v.value = '1'; "
             "v.dispatchEvent(new Event('change'))")
        assert _viewer_state(b)["label"].endswith(" / 9")  # the N = 9 set, frame kept
        b.js("document.getElementById('viewer').scrollIntoView()")
        b.js("document.querySelector('#v-methods input').click()")  # show it again for the screenshot
        b.screenshot(shots / "report_viewer.png")

        for ascending in (True, False):  # a click sorts by the column's numbers, a second click reverses
            b.js("document.querySelector('#table-video thead th:nth-child(4)').click()")
            cells = b.js("[...document.querySelectorAll('#table-video tbody td:nth-child(4)')]"
                         ".map(td => parseFloat(td.textContent))")
            numbers = [c for c in cells if c is not None]
            assert len(numbers) >= 2 and numbers == sorted(numbers, reverse=not ascending), cells
        verdicts = b.js("[...document.querySelectorAll('#table-claims tbody tr')]"
                        ".map(r => r.dataset.verdict)")
        chosen = sorted(set(verdicts))[0]
        b.js(f"const f = document.getElementById('verdict-filter'); f.value = {json.dumps(chosen)}; "
             "f.dispatchEvent(new Event('change'))")
        shown = b.js("[...document.querySelectorAll('#table-claims tbody tr')].filter(r => !r.hidden)"
                     ".map(r => r.dataset.verdict)")
        assert shown and set(shown) == {chosen} and len(shown) == verdicts.count(chosen)
        assert b.problems() == []
    finally:
        b.close()
