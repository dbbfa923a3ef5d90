"""report.html in a real headless browser: Chromium (from the OS packages) driven by Selenium opens the page that
`zephyr-recipes report` wrote from real tiny runs, over file:// with nothing to fetch, and is asked what a reader
sees: the tables, the plots decoded, the filters changing what is shown, and an answer holding a script shown as
text and never run.

The runs: two evaluations of the held-out embedded tasks (the untrained builtin model, and answers written by the
embedded teacher program and read as another tool's answers, one of them an injected ``<script>``), both judged by the
embedded judge program, and an AI-feedback run whose generators are the teacher, its chatty variant and the builtin
model. ``make test-browser`` runs this (installing Chromium from apt when it can); it fails there when no browser is
found. ``ZEPHYR_SCREENSHOTS=<folder>`` saves the screenshots of the docs (docs/report-html-*.png) into that folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import browser_paths

pytestmark = pytest.mark.browser

MODEL = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr"]
QUESTIONS = 16
INSTRUCTIONS = 10
INJECTED = "<script>document.title='PWNED';window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">"


def _main(*args: str) -> int:
    from zephyr_recipes.commands.cli import main

    return main(list(args))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two evaluation runs and an AI-feedback run, and the report of all three (report.md, report.html)."""
    from zephyr_recipes.embedded.tasks import teacher
    from zephyr_recipes.evaluation.alpaca import load_instructions
    from zephyr_recipes.evaluation.mt_bench import load_questions

    tmp = tmp_path_factory.mktemp("report-html")
    sizes = [f"stage.mt_bench.max_questions={QUESTIONS}", f"stage.alpaca_eval.max_samples={INSTRUCTIONS}",
             "stage.mt_bench.max_new_tokens=8", "stage.alpaca_eval.sampling.max_new_tokens=8"]
    a = tmp / "eval-a"
    assert _main("tiny/eval-heldout", *MODEL, *sizes, f"run.output_dir={a}", "run.name=tiny-builtin") == 0

    # Answers from another tool: the teacher's right answer to every other question, a wrong one to the rest, and
    # a script where the first answer should be.
    questions = load_questions("builtin://tiny-zephyr-eval/question.jsonl", QUESTIONS, 0)
    lines = []
    for n, q in enumerate(questions):
        turns = [teacher([{"role": "user", "content": t}]) if n % 2 == 0 else "I do not know." for t in q.turns]
        if n == 0:
            turns[0] = INJECTED
        lines.append({"question_id": q.id, "model_id": "teacher-file", "choices": [{"index": 0, "turns": turns}]})
    (tmp / "mt_answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = load_instructions("builtin://tiny-zephyr-eval/alpaca_eval.json", INSTRUCTIONS, 0)
    outputs = [{"instruction": r["instruction"], "generator": "teacher-file",
                "output": teacher([{"role": "user", "content": r["instruction"]}])} for r in rows]
    (tmp / "alpaca_outputs.json").write_text(json.dumps(outputs))
    b = tmp / "eval-b"
    assert _main("tiny/eval-heldout", *MODEL, *sizes, f"stage.mt_bench.answers={tmp / 'mt_answers.jsonl'}",
                 f"stage.alpaca_eval.answers={tmp / 'alpaca_outputs.json'}", f"run.output_dir={b}",
                 "run.name=teacher-file") == 0

    aif = tmp / "aif"
    gens = ("stage.generators=[{name: teacher, type: function, function: 'zephyr_recipes.embedded.tasks:teacher'}, "
            "{name: chatty, type: function, function: 'zephyr_recipes.embedded.tasks:chatty_teacher'}, "
            "{name: builtin, type: transformers, model: 'builtin://tiny-mistral', model_config: {chat_template: zephyr}, "
            "sampling: {temperature: 1.0}}]")
    assert _main("tiny/aif", "dataset.max_train_samples=16", gens, "stage.sampling.max_new_tokens=8",
                 f"run.output_dir={aif}") == 0

    # The same with a noisy judge and its audit: the pairs its checks reverse are flagged (and dropped).
    audited = tmp / "aif-audited"
    pool = ("stage.generators=[{name: teacher, type: function, function: 'zephyr_recipes.embedded.tasks:teacher'}, "
            "{name: lazy, type: function, function: 'zephyr_recipes.embedded.noisy_judge:lazy'}, "
            "{name: sloppy, type: function, function: 'zephyr_recipes.embedded.noisy_judge:sloppy'}]")
    assert _main("tiny/aif", "dataset.max_train_samples=40", pool, "stage.judge.module=zephyr_recipes.embedded.noisy.flip20",
                 "stage.audit.enabled=true", "stage.audit.action=drop",
                 "stage.audit.judges=[{type: function, module: zephyr_recipes.embedded.noisy.second}]",
                 f"run.output_dir={audited}") == 0

    out = tmp / "report"
    assert _main("report", str(a), str(b), str(aif), str(audited), "--out", str(out)) == 0
    return {"a": a, "b": b, "aif": aif, "audited": audited, "out": out}


@pytest.fixture(scope="module")
def browser():
    browser, driver = browser_paths()
    if not (browser and driver):
        message = ("Chromium and chromedriver are needed (apt-get install chromium chromium-driver, or CHROMIUM= "
                   "and CHROMEDRIVER= naming them)")
        if os.environ.get("ZEPHYR_REQUIRE_BROWSER"):  # make test-browser: never a silent skip
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver  # the dev extra
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-proxy-server", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(arg)  # any request off the machine would fail: the page must need none
    drv = webdriver.Chrome(options=options, service=Service(driver))
    yield drv
    drv.quit()


def _visible(drv, section: str) -> int:
    return drv.execute_script(
        f"return [...document.querySelectorAll('#{section} details.q')].filter(d => !d.hidden).length")


def _shot(drv, name: str) -> None:
    folder = os.environ.get("ZEPHYR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(Path(folder) / f"report-html-{name}.png"))


def test_report_html_in_a_real_browser(browser, runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = runs["out"] / "report.html"
    text = page.read_text()
    assert "<script>document.title" not in text and "&lt;script&gt;document.title" in text
    assert page.stat().st_size < 2_000_000
    drv = browser
    drv.get(page.resolve().as_uri())
    title = drv.title
    assert title == "Evaluation report"

    # Loaded offline: nothing but the page itself and data: images.
    fetched = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith("data:") for u in fetched), fetched

    # The tables of report.md, both runs and the published rows among them, and the plots decoded.
    tables = drv.find_elements(By.CSS_SELECTOR, "#tables table")
    assert len(tables) >= 4
    first = tables[0].text
    assert "tiny-builtin" in first and "teacher-file" in first
    assert "Zephyr-7B-beta (published)" in drv.find_element(By.ID, "tables").text
    widths = drv.execute_script("return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(w > 0 for w in widths), widths
    _shot(drv, "tables")

    # MT-Bench: every question of the runs, collapsed; the category filter and the disagreement filter.
    judged = {name: {(j["question_id"], j["turn"]): j.get("score") for j in _rows(runs[name] / "mt_bench" /
                                                                                     "judgments.jsonl")}
              for name in ("a", "b")}
    categories = {j["question_id"]: j["category"] for j in _rows(runs["a"] / "mt_bench" / "judgments.jsonl")}
    disagree = {qid for (qid, turn), s in judged["a"].items() if judged["b"].get((qid, turn)) != s}
    assert 0 < len(disagree) < QUESTIONS
    assert _visible(drv, "b-mt_bench") == QUESTIONS
    assert drv.execute_script("return document.querySelectorAll('#b-mt_bench details.q[open]').length") == 0
    category = sorted(set(categories.values()))[0]
    Select(drv.find_element(By.CSS_SELECTOR, "#b-mt_bench select.cat-filter")).select_by_value(category)
    assert _visible(drv, "b-mt_bench") == sum(1 for c in categories.values() if c == category) < QUESTIONS
    count = drv.find_element(By.CSS_SELECTOR, "#b-mt_bench .count").text
    assert count.startswith(f"{_visible(drv, 'b-mt_bench')} of {QUESTIONS}")
    Select(drv.find_element(By.CSS_SELECTOR, "#b-mt_bench select.cat-filter")).select_by_value("")
    drv.find_element(By.CSS_SELECTOR, "#b-mt_bench input.dis-filter").click()
    assert _visible(drv, "b-mt_bench") == len(disagree)
    shown = drv.execute_script("return [...document.querySelectorAll('#b-mt_bench details.q')]"
                               ".filter(d => !d.hidden).map(d => d.querySelector('.qid').textContent)")
    assert {int(x) for x in shown} == disagree

    # The injected answer is there as text, and nothing of it ran.
    injected = drv.execute_script(
        "var d = [...document.querySelectorAll('#b-mt_bench details.q')].find(x => x.textContent.includes("
        "\"window.__pwned=1\")); if (!d) return null; d.hidden = false; d.open = true; d.scrollIntoView();"
        "window.scrollBy(0, -60);"
        "return [...d.querySelectorAll('.answer')].map(a => a.textContent)")
    assert injected and INJECTED in injected
    assert drv.execute_script("return typeof window.__pwned") == "undefined" and drv.title == title
    assert drv.execute_script("return document.querySelectorAll('.answer script, .answer img').length") == 0
    grid = drv.execute_script("return [...document.querySelectorAll('#b-mt_bench details.q[open] .model h4')]"
                              ".map(h => h.textContent)")
    assert grid == ["tiny-builtin", "teacher-file"]
    _shot(drv, "mt-bench")

    # AlpacaEval: the baseline beside both runs' answers.
    assert _visible(drv, "b-alpaca_eval") == INSTRUCTIONS
    assert "baseline" in drv.find_element(By.CSS_SELECTOR, "#b-alpaca_eval details.q .body").get_attribute(
        "textContent")

    # The AI-feedback run: every prompt, each generator's answer and ratings, chosen and rejected marked.
    summary = json.loads((runs["aif"] / "summary.json").read_text())
    pairs = summary["pairs"]["train_prefs"] + summary["pairs"].get("test_prefs", 0)
    assert _visible(drv, "aif-0") == summary["prompts"]
    assert drv.execute_script("return document.querySelectorAll('#aif-0 .model.chosen').length") == pairs
    assert drv.execute_script("return document.querySelectorAll('#aif-0 .model.rejected').length") == pairs
    Select(drv.find_element(By.CSS_SELECTOR, "#aif-0 select.cat-filter")).select_by_value("train pair")
    assert _visible(drv, "aif-0") == summary["pairs"]["train_prefs"]
    drv.execute_script("var d = [...document.querySelectorAll('#aif-0 details.q')].find(x => !x.hidden"
                       " && x.querySelector('.model.chosen')); d.open = true; d.scrollIntoView(); window.scrollBy(0, -60);")
    opened = drv.find_element(By.CSS_SELECTOR, "#aif-0 details.q[open]").text
    assert "chosen" in opened and "rejected" in opened and "mean rating" in opened and "helpfulness" in opened
    _shot(drv, "aif")

    # The audited run: each flagged pair names the checks that flagged it and what was done with it.
    report = json.loads((runs["audited"] / "audit.json").read_text())
    flagged = [p for p in report["pairs"] if p["flags"]]
    assert flagged
    flags = drv.execute_script("return [...document.querySelectorAll('#aif-1 details.q .flag')].map(x => x.textContent)")
    assert len(flags) == len(flagged)
    assert all("flagged: retest, judge:" in f and "(dropped)" in f for f in flags)
    Select(drv.find_element(By.CSS_SELECTOR, "#aif-1 select.cat-filter")).select_by_value("pair dropped by the audit")
    assert _visible(drv, "aif-1") == len(flagged)
