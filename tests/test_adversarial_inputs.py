"""Broken and hostile input, round 3 (issue 28): hostile YAML, writes outside the run folder, values checked at
validate, messages that point the right way, sweeps.

Every case runs the real command line in process (the ``cli`` fixture) in its own working folder, and checks the
exit code (2: a ZephyrError), that no traceback is printed, that the message names the problem and its fix, and
that nothing was written or lost: the folder tree (and the folder above it, where a lock file would go) is the
same after the command as before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAD = "defaults:\n  - /model: tiny\n  - /dataset: tiny-ultrachat\n  - /stage: sft\n  - /hardware: cpu\n  - _self_\n"
BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)))


@pytest.fixture
def work(tmp_path, monkeypatch):
    w = tmp_path / "work"
    w.mkdir()
    monkeypatch.chdir(w)
    return w


def tree(root: Path) -> dict:
    """Every path under root with its size and modification time (a file's bytes changed or a new file shows)."""
    return {str(p.relative_to(root)): (p.is_file() and p.stat().st_size, p.is_file() and p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def refused(cli, work: Path, args: list[str], *words: str, code: int = 2, lock_ok: bool = False) -> str:
    """Run the command; it must exit ``code``, print no traceback, name every word, and write nothing anywhere
    under work's parent (the tmp folder: work, the recipe folder beside it, lock files). ``lock_ok``: the command
    refuses an existing run folder after taking its lock (the lock file beside that folder, which stays, is all
    it may leave)."""
    before = tree(work.parent)
    rc, out, err = cli(*args)
    text = out + err
    assert rc == code, text[-3000:]
    assert "Traceback" not in text
    low = text.lower()
    for w in words:
        assert w.lower() in low, f"{w!r} not in {text[-2000:]}"
    assert "fix:" in text
    after = tree(work.parent)
    if lock_ok:
        after = {k: v for k, v in after.items() if not (k.endswith(".lock") and k not in before)}
    assert after == before, "the command wrote or changed files"
    return text


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ------------------------------------------------------------------------------------------------ hostile YAML
def test_alias_bomb_in_a_recipe_fails_in_well_under_a_second(cli, work):
    r = write(work / "bomb.yaml", HEAD + BOMB)
    t0 = time.perf_counter()
    refused(cli, work, ["validate", str(r)], "alias bomb", str(r))
    assert time.perf_counter() - t0 < 3  # measured ~0.01 s; the bound leaves room for a loaded machine


@pytest.mark.parametrize("command", ["validate", "show", "run", "plan", "preview"])
def test_every_command_that_reads_a_recipe_bounds_it(cli, work, command):
    r = write(work / "bomb.yaml", HEAD + BOMB)
    refused(cli, work, [command, str(r)], "alias bomb")


def test_five_thousand_nested_brackets_are_a_clear_error_not_recursion(cli, work):
    r = write(work / "deep.yaml", HEAD + "recipe:\n  description: " + "[" * 5000 + "]" * 5000 + "\n")
    text = refused(cli, work, ["validate", str(r)], "nests deeper than", "flatten")
    assert "RecursionError" not in text


def test_nested_mappings_are_bounded_too(cli, work):
    body = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    r = write(work / "deep.yaml", HEAD + body)
    refused(cli, work, ["validate", str(r)], "nests deeper than")


def test_an_oversized_recipe_is_refused_before_it_is_parsed(cli, work):
    r = write(work / "big.yaml", HEAD + "recipe:\n  description: '" + "x" * (5 * 1024 * 1024) + "'\n")
    refused(cli, work, ["validate", str(r)], "bytes", "over the")


def test_nul_bytes_are_named_as_a_binary_file(cli, work):
    r = write(work / "nul.yaml", HEAD.encode() + b"run:\n  seed: 1\x00\x00\n")
    refused(cli, work, ["validate", str(r)], "NUL byte", "line 8")


def test_a_duplicate_key_is_refused_naming_the_key_and_line(cli, work):
    r = write(work / "dup.yaml", HEAD + "run:\n  seed: 1\n  seed: 2\n")
    refused(cli, work, ["validate", str(r)], "`seed` twice", "line 9", "keep one")


def test_a_bomb_in_a_file_the_defaults_pull_in_is_refused(cli, work):
    rdir = work.parent / "rec"
    write(rdir / "base.yaml", BOMB)
    r = write(rdir / "r.yaml", HEAD.replace("  - _self_", "  - base\n  - _self_"))
    refused(cli, work, ["validate", str(r)], "alias bomb", "base.yaml")


def test_a_bomb_in_a_pipeline_recipe_is_refused(cli, work):
    r = write(work / "p.yaml", "pipeline:\n  stages: []\n" + BOMB)
    refused(cli, work, ["validate", str(r)], "alias bomb")


def test_a_bomb_in_an_unfinished_run_folders_config_is_named(cli, work):
    folder = work / "runs" / "x"
    write(folder / "config.yaml", BOMB)
    write(folder / "run.json", '{"status": "running"}')
    refused(cli, work, ["run", "tiny/sft", "run.output_dir=runs/x"], "config.yaml", "alias bomb",
            "run.overwrite=true", lock_ok=True)


def test_every_shipped_recipe_and_option_passes_the_bounds():
    from zephyr_recipes.core import yamlsafe
    from zephyr_recipes.core.catalog import CONF_DIR, RECIPES_DIR

    files = list(RECIPES_DIR.rglob("*.yaml")) + list(CONF_DIR.rglob("*.yaml"))
    assert len(files) > 30
    for f in files:
        yamlsafe.check_text(f.read_text(), f)  # raises on a false alarm


@pytest.mark.parametrize("body, words", [
    ("- a\n- b\n", ["a YAML list", "mapping"]),
    ("just words\n", ["a YAML string", "mapping"]),
    ("", ["empty", "mapping"]),
])
def test_a_recipe_that_is_not_a_mapping(cli, work, body, words):
    r = write(work / "odd.yaml", body)
    refused(cli, work, ["validate", str(r)], *words)


def test_a_latin1_recipe_is_named_not_utf8(cli, work):
    r = write(work / "l1.yaml", HEAD.encode() + "recipe:\n  description: café\n".encode("latin-1"))
    refused(cli, work, ["validate", str(r)], "not UTF-8", "line 8")


def test_a_bom_at_the_start_is_accepted(cli, work):
    r = write(work / "bom.yaml", b"\xef\xbb\xbf" + HEAD.encode())
    rc, out, err = cli("validate", str(r))
    assert rc == 0, err
    assert "ok: work/bom" in out


# ------------------------------------------------------------------------------- writes outside the run folder
def test_an_output_dir_that_is_a_file_is_refused_before_any_lock_is_made(cli, work):
    f = write(work / "taken", "precious\n")
    refused(cli, work, ["run", "tiny/sft", "run.output_dir=taken"], "is a file", "run.output_dir")
    assert f.read_text() == "precious\n"
    assert not list(work.parent.rglob("*.lock"))


def test_validate_refuses_an_output_dir_that_is_a_file(cli, work):
    write(work / "taken", "x")
    refused(cli, work, ["validate", "tiny/sft", "run.output_dir=taken"], "is a file")


def test_the_lock_refuses_a_file_in_the_folders_place(tmp_path):
    from zephyr_recipes.core import runfolder
    from zephyr_recipes.core.errors import ZephyrError

    f = write(tmp_path / "f", "x")
    with pytest.raises(ZephyrError, match="is a file"):
        with runfolder.locked(f):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("entry", ["../outside", "/model: ../../outside", "sub/../../outside"])
def test_a_defaults_entry_that_leaves_the_recipe_folder_is_refused(cli, work, entry):
    write(work.parent / "outside.yaml", "run:\n  seed: 7\n")
    r = write(work / "rec" / "r.yaml", HEAD.replace("  - _self_", f"  - {entry}\n  - _self_"))
    refused(cli, work, ["validate", str(r)], "leaves the recipe's folder", "..")


def test_a_symlinked_defaults_file_pointing_outside_is_refused(cli, work):
    secret = write(work.parent / "elsewhere" / "x.yaml", "run:\n  seed: 7\n")
    rdir = work / "rec"
    rdir.mkdir()
    (rdir / "base.yaml").symlink_to(secret)
    r = write(rdir / "r.yaml", HEAD.replace("  - _self_", "  - base\n  - _self_"))
    refused(cli, work, ["validate", str(r)], "symlink", "outside the recipe's folder", "copy the file")


def test_a_symlink_shipped_in_the_recipe_folder_cannot_move_the_run_outside(cli, work):
    outside = work.parent / "victim"
    outside.mkdir()
    (work / "runs").symlink_to(outside)  # the recipe folder is the working folder, as after `cd recipe-folder`
    r = write(work / "r.yaml", HEAD)
    refused(cli, work, ["run", str(r)], "symlink in the recipe's folder", "run.output_dir=")
    assert not any(outside.iterdir())


def test_the_command_line_may_name_a_folder_behind_such_a_symlink(cli, work):
    (work.parent / "big-disk").mkdir()
    (work / "runs").symlink_to(work.parent / "big-disk")
    r = write(work / "r.yaml", HEAD)
    rc, out, err = cli("validate", str(r), "run.output_dir=runs/mine")
    assert rc == 0, err


def test_an_exported_lock_variable_does_not_let_a_second_run_in(cli, work, tmp_path, monkeypatch):
    from zephyr_recipes.core import runfolder

    folder = (work / "runs" / "busy").resolve()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom zephyr_recipes.core import runfolder\n"
                               f"with runfolder.locked(Path({str(folder)!r}), ['first']):\n"
                               "    print('held', flush=True)\n    time.sleep(60)\n"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(runfolder.LOCK_ENV, str(folder))
        before = tree(work)
        rc, out, err = cli("run", "tiny/sft", f"run.output_dir={folder}")
        assert rc == 2 and "being written by process" in err and str(holder.pid) in err, err
        assert "Traceback" not in err
        assert tree(work) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_variable_is_not_trusted_the_lock_is_taken(tmp_path, monkeypatch):
    import json

    from zephyr_recipes.core import runfolder

    folder = (tmp_path / "x").resolve()
    monkeypatch.setenv(runfolder.LOCK_ENV, str(folder))
    with runfolder.locked(folder, ["me"]):
        held = json.loads(runfolder.lock_path(folder).read_text())
        assert held["pid"] == os.getpid() and held["command"] == ["me"]


def test_a_process_the_lock_holder_started_is_let_in(tmp_path):
    from zephyr_recipes.core import runfolder

    folder = (tmp_path / "x").resolve()
    probe = ("import sys\nfrom pathlib import Path\nfrom zephyr_recipes.core import lockguard, runfolder\n"
             f"print(lockguard.held_by_ancestor(runfolder.lock_path(Path({str(folder)!r}))))\n")
    with runfolder.locked(folder):
        child = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               capture_output=True, text=True, timeout=60)
    assert child.stdout.strip() == "True", child.stderr
    alone = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           capture_output=True, text=True, timeout=60)
    assert alone.stdout.strip() == "False", alone.stderr  # nobody holds it now


def test_an_unwritable_output_dir_is_named(cli, work):
    # /sys: a folder even root cannot write (the pre-flight finds no room there, before any folder is made)
    refused(cli, work, ["run", "tiny/sft", "run.output_dir=/sys/zr-i28/run"], "under /sys", "run.output_dir")


def test_a_dangling_symlink_as_output_dir_is_named(cli, work):
    (work / "gone").symlink_to(work / "nowhere")
    refused(cli, work, ["validate", "tiny/sft", "run.output_dir=gone"], "symlink to nothing")


# ------------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**64)])
def test_a_seed_outside_the_unsigned_32_bit_range_is_refused_at_validate(cli, work, seed):
    refused(cli, work, ["validate", "tiny/sft", f"run.seed={seed}"], "run.seed", "outside 0 .. 4294967295")


def test_the_largest_seed_is_accepted(cli, work):
    rc, out, err = cli("validate", "tiny/sft", f"run.seed={2**32 - 1}")
    assert rc == 0, err


@pytest.mark.parametrize("name, words", [
    ("x" * 300, ["300 bytes", "shorter run.name"]),
    ("a/b", ["'/'", "path separator"]),
    ("a\\\\b", ["path separator"]),
    ("..", ["not a folder name"]),
])
def test_a_run_name_a_folder_cannot_have_is_refused_at_validate(cli, work, name, words):
    refused(cli, work, ["validate", "tiny/sft", f"run.name='{name}'"], "run.name", *words)


@pytest.mark.parametrize("char", ["\n", "\x1b", "\u2028", "\u200e"])
def test_control_characters_in_a_run_name_are_refused(cli, work, char):
    r = write(work / "r.yaml", HEAD + f"run:\n  name: \"a{char.encode('unicode_escape').decode()}b\"\n")
    refused(cli, work, ["validate", str(r)], "run.name", "control character")


def test_a_unicode_run_name_is_fine(cli, work):
    r = write(work / "u.yaml", HEAD + "run:\n  name: zéphyr-试验\n")
    rc, out, err = cli("validate", str(r))
    assert rc == 0, err
    assert "runs/zéphyr-试验" in out


def test_an_output_dir_component_too_long_is_refused(cli, work):
    refused(cli, work, ["validate", "tiny/sft", f"run.output_dir=runs/{'y' * 300}"], "bytes long")


@pytest.mark.parametrize("sweep", ["run.seed=range(1,1)", "run.seed=range(5,1)"])
def test_a_sweep_over_nothing_is_refused_before_any_point(cli, work, sweep):
    refused(cli, work, ["-m", "tiny/sft", sweep], "no values", "range(1,4)")


def test_two_sweep_points_that_would_share_a_folder_are_refused(cli, work):
    refused(cli, work, ["-m", "tiny/sft", "dataset.path=a/b,a_b"], "share the folder")


@pytest.mark.parametrize("price", ["nan", "inf", "-1", "-inf"])
def test_plan_refuses_a_price_that_is_not_a_cost(cli, work, price):
    refused(cli, work, ["plan", "tiny/sft", f"--price={price}"], "--price", "not a cost")


@pytest.mark.parametrize("mem", ["-80", "0", "nan"])
def test_a_gpu_memory_that_is_not_a_size_is_refused(cli, work, mem):
    refused(cli, work, ["validate", "tiny/sft", f"hardware.gpu_memory_gb={mem}"], "gpu_memory_gb",
            "not a memory size")


@pytest.mark.parametrize("args, words", [
    (["--max-new-tokens", "-5"], ["--max-new-tokens -5", "at least 1"]),
    (["--max-new-tokens", "0"], ["at least 1"]),
    (["--temperature", "nan"], ["--temperature nan", "0 or more"]),
    (["--temperature", "-1"], ["--temperature -1.0"]),
    (["--temperature", "inf"], ["--temperature inf"]),
])
def test_chat_refuses_values_before_loading_anything(cli, work, args, words):
    refused(cli, work, ["chat", "builtin://tiny-mistral", "hi", *args], *words)


def tiny_model(dest: Path) -> Path:
    import shutil

    from zephyr_recipes.model import modeling

    shutil.copytree(modeling.resolve_source("builtin://tiny-mistral", "model"), dest)
    return dest


def test_chat_with_truncated_weights_names_the_file(cli, work):
    m = tiny_model(work / "m")
    w = m / "model.safetensors"
    with open(w, "r+b") as fh:
        fh.truncate(w.stat().st_size // 2)
    refused(cli, work, ["chat", str(m), "hi"], "model.safetensors", "cut short", "copy it again")


def test_chat_with_no_weights_at_all_says_so(cli, work):
    m = tiny_model(work / "m")
    for w in m.glob("*.safetensors"):
        w.unlink()
    refused(cli, work, ["chat", str(m), "hi"], "no weight file")


def test_chat_with_a_prompt_far_past_the_context_is_refused_at_once(cli, work):
    t0 = time.perf_counter()
    refused(cli, work, ["chat", "builtin://tiny-mistral", "word " * 400_000, "--chat-template", "zephyr"],
            "far past the model's context")
    assert time.perf_counter() - t0 < 60


def test_chat_with_a_prompt_longer_than_the_context_is_a_clear_error(cli, work):
    from zephyr_recipes.runtime import chat

    pipe = chat.load("builtin://tiny-mistral", "zephyr")
    limit = pipe.model.config.max_position_embeddings
    rc, out, err = cli("chat", "builtin://tiny-mistral", "7 + 8 " * limit, "--chat-template", "zephyr")
    assert rc == 2 and "the model's context holds" in err and "shorten the prompt" in err, err


def test_chat_cuts_a_reply_that_would_overflow_the_context_and_says_so(cli, work, caplog):
    from zephyr_recipes.runtime import chat

    pipe = chat.load("builtin://tiny-mistral", "zephyr")
    limit = pipe.model.config.max_position_embeddings
    text = chat.reply(pipe, [{"role": "user", "content": "What is 2 + 3?"}], limit * 4, 0.0)
    assert text
    assert "the reply is cut to" in caplog.text


def test_report_out_on_an_existing_file_is_refused(cli, work):
    f = write(work / "report.md", "mine\n")
    run = work / "fake"
    run.mkdir()
    refused(cli, work, ["report", str(run), "--out", str(f)], "--out", "is a file")
    assert f.read_text() == "mine\n"


# ------------------------------------------------------------------------------------------------ messages
def test_a_missing_interpolation_key_in_the_file_names_the_key_and_file(cli, work):
    r = write(work / "interp.yaml", HEAD + "run:\n  name: ${nothere.key}\n")
    text = refused(cli, work, ["validate", str(r)], "${nothere.key}", str(r), "fix the name in the file")
    assert "override syntax" not in text


def test_a_missing_interpolation_key_in_an_override_says_so(cli, work):
    refused(cli, work, ["validate", "tiny/sft", "run.name=${nope.key}"], "in an override", "nope.key")


@pytest.mark.parametrize("command", ["preview", "validate"])
def test_a_pipeline_where_a_stage_is_expected_says_so(cli, work, command):
    if command == "validate":  # a pipeline stage whose recipe is itself a pipeline
        r = write(work / "p.yaml", "pipeline:\n  output_dir: runs/p\n  stages:\n    - {name: a, recipe: tiny/zephyr}\n")
        text = refused(cli, work, [command, str(r)], "pipeline recipe", "single stage")
    else:
        text = refused(cli, work, [command, "tiny/zephyr"], "tiny/zephyr is a pipeline recipe", "single stage")
    assert "unknown top-level key" not in text


def test_a_full_disk_names_the_run_folder_not_the_working_folder(tmp_path, monkeypatch):
    import errno

    from zephyr_recipes.core import runfolder
    from zephyr_recipes.core.errors import ZephyrError

    monkeypatch.chdir(tmp_path)
    folder = (tmp_path / "runs" / "r").resolve()
    with pytest.raises(ZephyrError) as info:
        with runfolder.locked(folder):
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises
    assert str(folder) in info.value.problem and "full" in info.value.problem
    assert "run.output_dir" in info.value.fix


def test_a_read_only_cache_home_names_zephyr_recipes_home(cli, work, monkeypatch):
    monkeypatch.setenv("ZEPHYR_RECIPES_HOME", "/sys/zr-i28-home")
    text = refused(cli, work, ["validate", "tiny/sft"], "ZEPHYR_RECIPES_HOME", "export ZEPHYR_RECIPES_HOME=")
    assert "run.output_dir" not in text


def test_a_hand_edited_unfinished_run_is_named_and_kept(cli, work):
    folder = work / "runs" / "e"
    write(folder / "config.yaml", "run: {seed: 3}\nstage: {name: sft}\n")
    write(folder / "run.json", '{"status": "preempted"}')
    refused(cli, work, ["run", "tiny/sft", "run.output_dir=runs/e"], "unfinished run of a different config",
            "run.overwrite=true", lock_ok=True)


# ----------------------------------------------------------------------------------------- other broken input
def chat_rows(n: int) -> str:
    import json

    return "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(n))


def test_a_dataset_file_with_a_torn_last_line_is_named_at_validate(cli, work):
    write(work / "torn.jsonl", chat_rows(20) + '{"messages": [{"role": "us')
    refused(cli, work, ["validate", "tiny/sft", "dataset.path=torn.jsonl", "dataset.test_split=null"],
            "torn.jsonl, line 21", "not valid JSON", "fix or delete that line")


def test_an_empty_dataset_file_is_named_at_validate(cli, work):
    write(work / "empty.jsonl", "")
    refused(cli, work, ["validate", "tiny/sft", "dataset.path=empty.jsonl", "dataset.test_split=null"],
            "empty.jsonl is empty")


def test_a_symlinked_folder_that_is_not_a_run_is_never_replaced(cli, work):
    mine = work.parent / "mine"
    write(mine / "thesis.tex", "years of work\n")
    (work / "link").symlink_to(mine)
    refused(cli, work, ["run", "tiny/sft", "run.output_dir=link", "run.overwrite=true"], "not a run folder",
            lock_ok=True)
    assert (mine / "thesis.tex").read_text() == "years of work\n"


def test_an_unquoted_value_with_special_characters_says_how_to_quote_it(cli, work):
    refused(cli, work, ["validate", "tiny/sft", "stage.trainer.eos_token=<|im_end|>"], "cannot compose",
            "goes in quotes", "\"stage.trainer.eos_token='<|im_end|>'\"")


def test_chat_with_a_misspelt_run_folder_says_the_folder_is_missing(cli, work):
    (work / "runs" / "tiny-sft").mkdir(parents=True)
    (work / "runs" / "tiny-sft" / "config.json").write_text("{}")  # a folder that exists beside the misspelt one
    refused(cli, work, ["chat", "runs/tiny-stf", "hi"], "there is no folder runs/tiny-stf", "ls runs")
