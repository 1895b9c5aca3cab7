"""`reports/index.html` (docs/DESIGN.md "Reports"): the report as one self-contained page.

The same sections as README.md (provenance, the claims with their CIs and verdicts, the Eq. 6 floors, missing
and failed runs, every table, every figure, the metric definitions) plus the sample viewer
(`bench.report.viewer`). The style and the script (`page.css`, `page.js` beside this file) are inlined and
the viewer's data is a JSON block, so nothing is fetched: the page opens from `file://`. Figures, GIFs, the
viewer's strips and the tables' files are linked by paths relative to the page, so the report folder can be
copied or served as it is.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.metrics import VOCABULARY, direction
from bench.report.tables import Table

HERE = Path(__file__).parent


@dataclass
class Page:
    """What the page shows, computed by `bench.report.build_report` (the README's own parts)."""

    marks: list[str]  # Markdown warnings that open the page (mixed provenance, not comparable)
    provenance: list[tuple[str, str]]  # (what, value) rows
    claims: Table
    findings: list[str]  # the Eq. 6 floors beside the paper's figures, one Markdown line per N
    missing: list[str]  # missing, failed and damaged entries, one Markdown line each
    tables: list[Table]  # every other table
    files: dict[str, list[str]]  # table name -> its files (md, csv, tex), relative to the page
    figures: list[str]  # figure files relative to the page
    definitions: dict[str, str]  # metric -> definition
    footnotes: list[str]  # Markdown lines after the definitions
    viewer: list[dict] = field(default_factory=list)  # `bench.report.viewer.ViewerSet.doc` per N
    viewer_note: str = ""  # how the samples were chosen and where the frames come from (Markdown)


def inline(text: str) -> str:
    """The Markdown the report's notes use (`code`, **bold**, *italic*, [text](link)) as HTML, escaped."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', out)


def _table(table: Table, files: list[str], verdicts: bool = False) -> list[str]:
    out = [f'<section id="{table.name}">', f"<h2>{inline(table.title)}</h2>", '<div class="notes">']
    out += [f"<p>{inline(n)}</p>" for n in table.notes] + ["</div>"]
    if verdicts and not table.display.empty and "Verdict" in table.display:
        kinds = sorted(set(table.display["Verdict"]))
        options = "".join(f'<option value="{html.escape(k)}">{html.escape(k)}</option>' for k in kinds)
        out.append(f'<p class="toolbar"><label>Verdict <select id="verdict-filter"><option value="">all'
                   f'</option>{options}</select></label> <span id="verdict-count">{len(table.display)} shown'
                   "</span></p>")
    if table.display.empty:
        out.append("<p><em>(no finished runs for this table)</em></p>")
    else:
        out += ['<div class="scroll">', f'<table class="sortable" id="table-{table.name}"><thead><tr>']
        out += [f"<th>{inline(str(c))}</th>" for c in table.display.columns] + ["</tr></thead><tbody>"]
        for row in table.display.itertuples(index=False):
            verdict = f' data-verdict="{html.escape(str(row.Verdict))}"' if verdicts else ""
            out.append(f"<tr{verdict}>" + "".join(f"<td>{inline(str(v))}</td>" for v in row) + "</tr>")
        out += ["</tbody></table>", "</div>"]
    if files:
        links = ", ".join(f'<a href="{html.escape(f)}">{html.escape(f.rsplit(".", 1)[-1])}</a>'
                          for f in files)
        out.append(f'<p class="files">Files: {links}</p>')
    return out + ["</section>"]


def _figures(figures: list[str]) -> list[str]:
    out = ['<section id="figures">', "<h2>Figures</h2>"]
    stills = [f for f in figures if f.endswith(".png")]
    moving = [f for f in figures if f.endswith((".gif", ".mp4"))]
    for f in stills:
        stem, src = html.escape(Path(f).stem), html.escape(f)
        out.append(f'<figure class="plot"><a href="{src}"><img src="{src}" alt="{stem}"></a>'
                   f"<figcaption>{stem}</figcaption></figure>")
    if moving:
        out += ["<h3>Each method's video beside the truth</h3>", '<div class="gifs">']
        for f in moving:
            stem, src = html.escape(Path(f).stem), html.escape(f)
            media = (f'<video src="{src}" controls loop muted></video>' if f.endswith(".mp4")
                     else f'<img src="{src}" alt="{stem}">')
            out.append(f'<figure class="plot">{media}<figcaption><a href="{src}">{stem}</a></figcaption>'
                       "</figure>")
        out.append("</div>")
    others = [f for f in figures if f not in stills and f not in moving]
    if others:
        out.append("<p>Also: " + ", ".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in others)
                   + "</p>")
    return out + ["</section>"]


def _viewer(page: Page) -> list[str]:
    out = ['<section id="viewer">', "<h2>Sample viewer</h2>",
           f'<p class="notes">{inline(page.viewer_note)}</p>']
    if not page.viewer:
        return out + ["<p><em>(no samples: the report was built with --samples 0)</em></p>", "</section>"]
    out += ['<p class="notes" id="v-stated"></p>',
            '<div class="toolbar"><label>Set <select id="v-set"></select></label>'
            '<label>Order by <select id="v-order-metric"></select></label>'
            '<label>of <select id="v-order-method"></select></label>'
            '<label><select id="v-order-dir"><option value="worst">worst first</option>'
            '<option value="best">best first</option></select></label></div>',
            '<div class="toolbar"><button id="v-prev" type="button">&larr; previous</button>'
            '<label>Sample <select id="v-sample"></select></label>'
            '<button id="v-next" type="button">next &rarr;</button>'
            '<button id="v-play" type="button">Play</button>'
            '<input id="v-frame" type="range" min="0" max="0" value="0" step="1" aria-label="frame">'
            '<span id="v-frame-label"></span><span class="notes">(or the arrow keys; p plays)</span></div>',
            '<div class="toolbar"><span>Methods:</span><div id="v-methods"></div></div>',
            '<p id="v-sample-note"></p>', '<div id="v-players"></div>']
    shown = {k: m for k, m in VOCABULARY.items() if m.per_sample}
    doc = {"sets": page.viewer, "metrics": {k: {"label": m.label, "unit": m.unit, "better": m.better,
                                                "direction": direction(k)} for k, m in shown.items()}}
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    return out + [f'<script type="application/json" id="viewer-data">{text}</script>', "</section>"]


def _nav(page: Page) -> str:
    items = [("provenance", "Provenance"), ("claims", "Claims"), ("floors", "Eq. 6 floors"),
             ("viewer", "Sample viewer"), ("missing", "Missing and failed runs")]
    items += [(t.name, inline(t.title)) for t in page.tables]
    items += [("figures", "Figures"), ("definitions", "Metric definitions")]
    return "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in items) + "</nav>"


def render(page: Page) -> str:
    """The whole page as one string."""
    head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>Blurred Moments Bench: report</title>",
            f"<style>\n{(HERE / 'page.css').read_text()}</style>", "</head>", "<body>", "<header>",
            "<h1>Blurred Moments Bench: report</h1>"]
    head += [f'<p class="banner">{inline(m.lstrip("> "))}</p>' for m in page.marks]
    head += ["<p>Reproduction of Purohit, Shah, Rajagopalan, <em>Bringing Alive Blurred Moments</em>, "
             "CVPR 2019. Built by <code>bench report</code> from stored runs only.</p>", _nav(page),
             "</header>", "<main>"]
    body = ['<section id="provenance">', "<h2>Provenance</h2>", "<table>"]
    body += [f"<tr><th>{inline(k)}</th><td>{inline(v)}</td></tr>" for k, v in page.provenance]
    body += ["</table>", "</section>"]
    body += _table(page.claims, page.files.get(page.claims.name, []), verdicts=True)
    body += ['<section id="floors">', "<h2>Eq. 6 floors beside the paper's figures</h2>", "<ul>"]
    body += [f"<li>{inline(line.lstrip('- '))}</li>" for line in page.findings] + ["</ul>", "</section>"]
    body += _viewer(page)
    body += ['<section id="missing">', "<h2>Missing and failed runs</h2>", "<ul>"]
    body += [f"<li>{inline(line)}</li>" for line in page.missing] + ["</ul>", "</section>"]
    for table in page.tables:
        body += _table(table, page.files.get(table.name, []))
    body += _figures(page.figures)
    body += ['<section id="definitions">', "<h2>Metric definitions</h2>", "<ul>"]
    body += [f"<li><code>{html.escape(k)}</code>: {inline(v)}</li>" for k, v in page.definitions.items()]
    body += [f"<li>{inline(line)}</li>" for line in page.footnotes] + ["</ul>", "</section>", "</main>"]
    tail = [f"<script>\n{(HERE / 'page.js').read_text()}</script>", "</body>", "</html>", ""]
    return "\n".join(head + body + tail)
