"""report.html: the report as one self-contained page to browse.

The page holds the tables of report.md (rendered from its markdown), its plots embedded as base64 PNG, and per
benchmark (and per AI-feedback run) every prompt as a collapsed block: the prompt, the reference or baseline answer,
each compared model's answers side by side with the judge's grades or verdicts, and the judge's rationale. Two
filters per section, by category and "models disagree", are a few lines of inline script that only hide and show
blocks; every text from a run folder is HTML-escaped when the page is written, so an answer holding ``<script>`` shows
as text. Nothing is fetched: no network, no file beside the page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

SNIPPET = 150  # characters of the prompt in a collapsed block's summary

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1500px;padding:0 18px 60px;
color:#1d232b;background:#fbfbfc}
h1{font-size:1.6em;margin:.8em 0 .3em}h2{margin-top:1.6em;border-bottom:1px solid #d7dbe0;padding-bottom:.2em}
h3{margin-top:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px;background:#fff}
th,td{border:1px solid #d7dbe0;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eef1f5}
code{background:#eef1f5;padding:0 3px;border-radius:3px}
img.plot{max-width:100%;border:1px solid #d7dbe0;background:#fff;margin:.5em 0}
nav.toc a{margin-right:1em}
.controls{position:sticky;top:0;background:#fbfbfcee;padding:6px 0;z-index:2;border-bottom:1px solid #e3e6ea}
.controls label{margin-right:1.2em}.count{color:#57606a}
details.q{border:1px solid #d7dbe0;border-radius:5px;margin:5px 0;background:#fff}
details.q>summary{cursor:pointer;padding:5px 9px;list-style-position:inside}
details.q[open]>summary{border-bottom:1px solid #e3e6ea;background:#f6f8fa}
.qid{font-family:ui-monospace,monospace;color:#57606a;margin-right:.5em}
.cat{display:inline-block;background:#e7eefb;color:#234;border-radius:9px;padding:0 7px;font-size:12px;margin-right:.5em}
.flag{display:inline-block;background:#f8d7da;color:#721c24;border-radius:9px;padding:0 7px;font-size:12px;margin-right:.4em}
.dis{display:inline-block;background:#fdecc8;color:#6b4500;border-radius:9px;padding:0 7px;font-size:12px;
margin-right:.5em}
.badge{display:inline-block;border:1px solid #d7dbe0;border-radius:4px;padding:0 5px;font-size:12px;margin-left:.3em;
color:#333}
.body{padding:8px 10px}
.prompt,.ref{white-space:pre-wrap;background:#f6f8fa;border-left:3px solid #8fb3d9;padding:5px 8px;margin:4px 0}
.ref{border-left-color:#9ccc9c}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px;margin-top:8px}
.model{border:1px solid #e3e6ea;border-radius:4px;padding:6px 8px;background:#fff}
.model h4{margin:0 0 4px;font-size:13px}
.model.chosen{border-color:#2f8f46;box-shadow:inset 3px 0 #2f8f46}.model.rejected{border-color:#c0392b;
box-shadow:inset 3px 0 #c0392b}
.verdict{font-size:12px;color:#24466b;margin:3px 0}
.answer{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12.5px;background:#fafbfc;padding:4px 6px;
border:1px solid #eef0f2;margin:3px 0;max-height:420px;overflow:auto}
.rationale{font-size:12px;color:#444;white-space:pre-wrap}
.note{color:#57606a}
"""

SCRIPT = """
(function(){
  document.querySelectorAll('section.browse').forEach(function(sec){
    var cat = sec.querySelector('select.cat-filter'), dis = sec.querySelector('input.dis-filter');
    var count = sec.querySelector('.count'), items = sec.querySelectorAll('details.q');
    function apply(){
      var shown = 0;
      items.forEach(function(d){
        var ok = (!cat.value || d.dataset.cat === cat.value) && (!dis.checked || d.dataset.disagree === '1');
        d.hidden = !ok; if (ok) shown++;
      });
      count.textContent = shown + ' of ' + items.length + ' shown';
    }
    cat.addEventListener('change', apply); dis.addEventListener('change', apply); apply();
  });
})();
"""

# Nothing is loaded from anywhere, and the page's own script is the only one that may run (by its hash): a text that
# escaping missed could still not run.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()}'")

_INLINE = re.compile(r"(\*\*[^*]+\*\*|`[^`]+`)")


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _inline(text: str) -> str:
    """Escaped text with the markdown the reports use inline: **bold** and `code`."""
    out = []
    for part in _INLINE.split(text):
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            out.append(f"<strong>{_e(part[2:-2])}</strong>")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            out.append(f"<code>{_e(part[1:-1])}</code>")
        else:
            out.append(_e(part))
    return "".join(out)


def image(path: Path, alt: str) -> str:
    """A PNG beside the report as an <img> with the picture inside the page."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def markdown(md: str, folder: Path) -> str:
    """The reports' markdown as HTML: headings, tables, lists, paragraphs and images (read from ``folder`` and
    embedded); everything else is escaped text."""
    out: list[str] = []
    para: list[str] = []
    lines = md.splitlines()

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        img = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if not line.strip():
            flush()
        elif img:
            flush()
            path = Path(folder) / img.group(2)
            if path.is_file() and path.suffix.lower() == ".png":
                out.append(image(path, img.group(1)))
            else:
                out.append(f'<p class="note">(image {_e(img.group(2))} not found)</p>')
        elif m := re.match(r"(#{1,6}) (.*)", line):
            flush()
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.lstrip().startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
            continue
        elif re.match(r"\s*- ", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*- ", lines[i]):
                items.append(lines[i].split("- ", 1)[1])
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
            continue
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)


def _short(text: str) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def _entry(e: dict) -> str:
    out = [f'<div class="verdict"><strong>{_e(e["label"])}</strong>: {_e(e["verdict"])}</div>',
           f'<div class="answer">{_e(e["text"])}</div>' if e["text"] else
           '<div class="answer note">(empty answer)</div>']
    if e.get("rationale"):
        out.append(f'<details><summary>judge\'s rationale</summary><div class="rationale">{_e(e["rationale"])}</div>'
                   "</details>")
    return "".join(out)


def _item(item: dict) -> str:
    badges = "".join(f'<span class="badge" title="{_e(name)}">{_e(name)}: '
                     f'{_e("–" if e[0].get("score") is None else format(e[0]["score"], "g"))}'
                     + "".join(f' / {_e("–" if x.get("score") is None else format(x["score"], "g"))}' for x in e[1:])
                     + "</span>" for name, e in item["answers"].items())
    summary = (f'<span class="qid">{_e(item["id"])}</span><span class="cat">{_e(item["category"])}</span>'
               + ('<span class="dis">models disagree</span>' if item.get("disagree") else "")
               + (f'<span class="flag" title="the audit\'s checks that reverse this pair">flagged: '
                  f'{_e(", ".join(item["flags"]))} ({_e(item.get("audit_action") or "kept")})</span>'
                  if item.get("flags") else "")
               + _e(_short(item["prompt"][0] if item["prompt"] else "(prompt not available)")) + badges)
    body = []
    for t, text in enumerate(item["prompt"], 1):
        label = f"turn {t}" if len(item["prompt"]) > 1 else "prompt"
        body.append(f'<div><strong>{label}</strong></div><div class="prompt">{_e(text)}</div>')
    for t, text in enumerate(item.get("reference") or [], 1):
        body.append(f'<div><strong>reference answer, turn {t}</strong></div><div class="ref">{_e(text)}</div>')
    if item.get("baseline"):
        body.append(f'<div><strong>baseline ({_e(item["baseline"]["name"])})</strong></div>'
                    f'<div class="ref">{_e(item["baseline"]["text"])}</div>')
    cols = []
    for name, entries in item["answers"].items():
        role = next((e.get("role") for e in entries if e.get("role")), "")
        cols.append(f'<div class="model {_e(role)}"><h4>{_e(name)}</h4>' + "".join(_entry(e) for e in entries)
                    + "</div>")
    body.append('<div class="grid">' + "".join(cols) + "</div>")
    return (f'<details class="q" data-cat="{_e(item["category"])}" data-disagree="{1 if item.get("disagree") else 0}">'
            f"<summary>{summary}</summary><div class=\"body\">{''.join(body)}</div></details>")


def section(anchor: str, title: str, intro: str, items: list[dict], limit: int | None = None) -> str:
    """One browsable section: its filters and a collapsed block per prompt (the first ``limit`` when given)."""
    total = len(items)
    if limit is not None and total > limit:
        items = items[:limit]
    cats = sorted({i["category"] for i in items})
    models = list(dict.fromkeys(m for i in items for m in i["answers"]))  # in the runs' order
    more = f" The first {len(items)} of {total} prompts are shown." if len(items) < total else ""
    controls = ('<div class="controls"><label>category <select class="cat-filter"><option value="">all</option>'
                + "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in cats) + "</select></label>"
                '<label><input type="checkbox" class="dis-filter"> models disagree</label>'
                '<span class="count"></span></div>')
    return (f'<section class="browse" id="{_e(anchor)}"><h2>{_e(title)}</h2>'
            f'<p class="note">{_e(intro)} Compared: {_e(", ".join(models) or "–")}.{_e(more)}</p>'
            + controls + "\n".join(_item(i) for i in items) + "</section>")


def write(path: Path, title: str, report_md: str, folder: Path, sections: list[str], toc: list[tuple[str, str]]):
    """The page: report.md's tables and plots, then the browsable sections."""
    nav = '<nav class="toc"><a href="#tables">tables and plots</a>' + "".join(
        f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in toc) + "</nav>"
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"{nav}<div id=\"tables\">{markdown(report_md, folder)}</div>"
            + "\n".join(sections) + f"<script>{SCRIPT}</script></body></html>\n")
    Path(path).write_text(page, encoding="utf-8")
    return path


def _pipeline_stages(folder: Path) -> tuple[list[tuple[str, Path]], list[Path], str]:
    """A pipeline folder's finished evaluation stages as (model name, folder), its AI-feedback stages, and its label."""
    import json

    import yaml

    from ..evaluation import browse  # lazy: start-up (report.html only)

    spec = (yaml.safe_load((Path(folder) / "pipeline.yaml").read_text()) or {}).get("pipeline") or {}
    evals, aifs = [], []
    for st in spec.get("stages") or []:
        f = Path(st["folder"]) if st.get("folder") else Path(folder) / st["name"]
        if (f / "scores.json").is_file():
            evals.append((str(json.loads((f / "scores.json").read_text()).get("model_id") or f.name), f))
        elif browse.is_aif_folder(f):
            aifs.append(f)
    status = Path(folder) / "pipeline.json"
    seed = json.loads(status.read_text()).get("seed") if status.is_file() else None
    return evals, aifs, f"seed {seed}" if seed is not None else str(folder)


def build(out: Path, report_md: str, evals: list[Path], pipelines: list[Path], aifs: list[Path]) -> Path:
    """Write ``out``/report.html from the report's markdown and the run folders it was made from: evaluation run
    folders (compared side by side), pipeline folders (the first one's evaluation and AI-feedback stages are browsed)
    and AI-feedback run folders."""
    from .. import benchmarks  # lazy: start-up (report.html only)
    from ..evaluation import browse  # lazy: start-up (report.html only)
    from .report import load_run, run_names  # lazy: start-up (report.html only)

    runs: list[tuple[str, Path]] = []
    whose = ""
    if evals:
        runs = list(zip(run_names([load_run(f) for f in evals]), evals))
    elif pipelines:
        runs, own_aifs, label = _pipeline_stages(pipelines[0])
        aifs = own_aifs + list(aifs)
        whose = (f" From the pipeline {pipelines[0]} ({label})"
                 + (f"; the other {len(pipelines) - 1} pipeline(s) answered the same prompts with other seeds."
                    if len(pipelines) > 1 else "."))
    sections, toc = [], []
    for bench in benchmarks.all_benchmarks():
        ran = [(n, f) for n, f in runs if (Path(f) / bench.name).is_dir()]
        items = bench.browse(ran) if ran else None
        if not items:
            continue
        what = {"grade": "the judge's grade of each turn", "compare": "the judge's preference against the baseline",
                "verdict": "the judge's verdicts in both games against the baseline"}.get(bench.asks or "", "the figures")
        intro = (f"Every prompt of {bench.title} (click to open): each run's answers side by side with {what} and "
                 "its rationale. The badges give each run's figure per turn or prompt." + whose)
        sections.append(section(f"b-{bench.name}", bench.title, intro, items, browse.MAX_ITEMS))
        toc.append((f"b-{bench.name}", bench.title))
    for n, folder in enumerate(aifs):
        intro = (f"AI feedback of {folder}: every prompt with each generator's answer, the judge's ratings (four "
                 "UltraFeedback aspects, 1-5, and their mean) and rationales; the answers that became the chosen "
                 "(green) and rejected (red) ones, the split they went to, or no pair. \"models disagree\" keeps the "
                 "prompts whose answers were rated differently. With the judge audit on, \"flagged\" names the "
                 "checks that reverse a pair (audit.json) and what was done with it.")
        sections.append(section(f"aif-{n}", f"AI feedback: {Path(folder).name}", intro, browse.aif(folder),
                                browse.MAX_ITEMS))
        toc.append((f"aif-{n}", f"AI feedback: {Path(folder).name}"))
    title = report_md.splitlines()[0].lstrip("# ").strip() if report_md.strip() else "Report"
    return write(Path(out) / "report.html", title, report_md, out, sections, toc)
