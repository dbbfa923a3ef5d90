"""Every command the docs show (README.md, docs/*.md, ARCHITECTURE.md) either runs here or says what it needs.

Commands are the lines of ```bash / ```sh / ```console blocks (in a block with `$ ` prompts, only those lines; a
trailing backslash continues a line). The cheap ones run for real through the command line: `zephyr-recipes list,
show, validate, plan, cp, preview, --help`, any run with `--dry-run` added (not a sweep, `-m`: it runs its
points whatever the flag), and `make list|show|validate`.
Every other command must carry, in its trailing comment, one of the NEEDS phrases or a reference to what runs it:
`tested by tests/FILE.py::NAME` (NAME a test or fixture defined there) or `run by .ci/run` (its make target, or a
target that depends on it, is in .ci/run). A comment `(exit N)` gives the exit code a run must end with.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL = {"bash", "sh", "shell", "console"}
NEEDS = ("needs a GPU", "needs the hub", "needs an API key", "needs a Slurm cluster", "needs your files",
         "needs a server", "needs the package index")
TESTED = re.compile(r"tested by (tests/[\w/]+\.py)::(\w+)")
CHEAP = {"list", "show", "validate", "plan", "cp", "preview"}
MAKE_CHEAP = {"list", "show", "validate"}


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return files + [p for p in (ROOT / "ARCHITECTURE.md",) if p.is_file()]


def _split_comment(line: str) -> tuple[str, str]:
    """(command, trailing comment): the first # after whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


def commands(path: Path) -> list[tuple[int, str, str]]:
    """(line number, command, comment) of every shell command in path's code blocks."""
    found, block, lang, start = [], None, "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            if block is None:
                block, lang, start = [], line.strip()[3:].strip().lower(), n
            else:
                if lang in SHELL:
                    found += _block_commands(block, start)
                block = None
            continue
        if block is not None:
            block.append(line)
    return found


def _block_commands(lines: list[str], start: int) -> list[tuple[int, str, str]]:
    prompted = any(line.startswith("$ ") for line in lines)
    out, pending, first, notes = [], "", 0, []
    for n, line in enumerate(lines, start + 1):
        if prompted and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        text, comment = _split_comment(line.strip())
        if not pending:
            first = n
        notes.append(comment)
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        out.append((first, pending + text.strip(), " ".join(c for c in notes if c)))
        pending, notes = "", []
    return out


ALL = [(p, n, cmd, note) for p in doc_files() for n, cmd, note in commands(p)]


def _id(item) -> str:
    path, n, _, _ = item
    return f"{path.relative_to(ROOT)}:{n}"


def _ci_targets() -> set[str]:
    ci = (ROOT / ".ci" / "run").read_text()
    targets = set(re.findall(r"^\s*make ([\w-]+)", ci, flags=re.M))
    rules = dict(re.findall(r"^([\w-]+):([^=\n]*)$", (ROOT / "Makefile").read_text(), flags=re.M))
    for target in list(targets):  # what those targets make first
        targets |= set(rules.get(target, "").split())
    return targets


def how(command: str, note: str) -> str:
    """'run' (cheap: run it here), 'marked' (a valid marker), or the problem."""
    words = shlex.split(command)
    if any(need in note for need in NEEDS):
        return "marked"
    if m := TESTED.search(note):
        test_file = ROOT / m.group(1)
        if not test_file.is_file():
            return f"names {m.group(1)}, which does not exist"
        if not re.search(rf"^\s*def {m.group(2)}\(", test_file.read_text(), flags=re.M):
            return f"names {m.group(2)}, which {m.group(1)} does not define"
        return "marked"
    if "run by .ci/run" in note:
        target = words[1] if words[:1] == ["make"] and len(words) > 1 else None
        if target in _ci_targets():
            return "marked"
        return f"says it is run by .ci/run, but .ci/run does not make {target or command!r}"
    if words[:1] == ["zephyr-recipes"]:
        args = words[1:]
        # a sweep (-m) is left out: it runs every point, and with --dry-run it is refused (one point is dry-run alone)
        if not args or args[0] in CHEAP | {"--help", "-h", "run"} or args[0] not in ("rehearse", "report", "chat", "-m"):
            return "run"
    if words[:1] == ["make"] and len(words) > 1 and words[1] in MAKE_CHEAP:
        return "run"
    return "is neither cheap enough to run here nor marked (" + ", ".join(NEEDS) + \
        ", 'tested by tests/FILE.py::NAME' or 'run by .ci/run')"


def test_the_docs_show_commands_and_the_parser_finds_them():
    assert len(ALL) >= 20
    by_file = {p.name for p, *_ in ALL}
    assert {"README.md", "recipes.md", "hardware.md"} <= by_file
    # a continued line is one command; a comment-only line is none; $ prompts select the commands
    sample = ["zephyr-recipes show tiny/sft \\", "    hardware=cpu   # the config", "# just words", "",
              "make test  # needs a GPU"]
    assert _block_commands(sample, 0) == [(1, "zephyr-recipes show tiny/sft hardware=cpu", "the config"),
                                          (5, "make test", "needs a GPU")]
    assert _block_commands(["$ zephyr-recipes list", "output line # not a comment"], 0) == [
        (1, "zephyr-recipes list", "")]
    assert how("pip install x", "") .startswith("is neither")
    assert how("make zephyr", "tested by tests/test_pipeline.py::no_such_test").startswith("names no_such_test")
    assert how("make docs", "run by .ci/run") == "marked" and how("make bench", "run by .ci/run") != "marked"
    assert how("zephyr-recipes -m tiny/dpo stage.trainer.beta=0.1,0.2", "").startswith("is neither")


@pytest.mark.parametrize("item", ALL, ids=_id)
def test_each_command_runs_or_says_what_it_needs(item, tmp_path, monkeypatch, capsys):
    """The cheap ones run through the real command line (in this process: imports once), in an empty folder."""
    path, n, command, note = item
    verdict = how(command, note)
    if verdict == "marked":
        return
    where = f"{path.relative_to(ROOT)}:{n}: `{command}`"
    assert verdict == "run", f"{where} {verdict}"
    words = shlex.split(command)
    expected = int(m.group(1)) if (m := re.search(r"\(exit (\d+)\)", note)) else 0
    if words[0] == "make":
        p = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", f"PY={sys.executable}",
                            *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        code, output = p.returncode, p.stdout + p.stderr
    else:
        from zephyr_recipes.commands.cli import main

        args = words[1:]
        if args and args[0] not in CHEAP | {"--help", "-h"}:
            args = [*args, "--dry-run"]
        monkeypatch.chdir(tmp_path)
        try:
            code = main(args)
        except SystemExit as exc:  # --help
            code = exc.code or 0
        out = capsys.readouterr()
        output = out.out + out.err
    assert code == expected, f"{where} exited {code}:\n{output[-3000:]}"
    # In one process, a logging handler an earlier command bound to an earlier test's captured stderr reports
    # "--- Logging error ---" with a traceback when a library logs to it; that is the harness, not the command.
    own = re.sub(r"--- Logging error ---.*?Arguments: [^\n]*\n", "", output, flags=re.S)
    assert "Traceback" not in own, f"{where}:\n{own[-3000:]}"


def test_readme_is_a_landing_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
