"""Served generators and judges: the runner starts a real OpenAI-compatible server process (tests/openai_server.py,
on 127.0.0.1), waits for /v1/models, uses it through the ordinary client, and stops it -- after the stage, on an
error, on a timeout, on Ctrl-C and on SIGTERM -- leaving no process behind (the server and the helper process
it starts). The server's answers are not what is tested; its lifecycle is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_aif import _recipe, _rows, _write_prompts

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "openai_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(port: int, pidfile: Path, *extra: str) -> str:
    return f"{sys.executable} {SERVER} --port {port} --pidfile {pidfile} {' '.join(extra)}".strip()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def gone(pidfile: Path, timeout: float = 30) -> bool:
    pids = json.loads(pidfile.read_text()).values()
    end = time.time() + timeout
    while time.time() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def stage(command: str, timeout: str = "") -> str:
    return f"""  generators:
    - {{name: sloppy, type: function, function: "tests.helpers:sloppy"}}
    - {{name: served, type: openai, serve: "{command}"{timeout}, concurrency: 1}}
  judge: {{type: function, module: zephyr_recipes.embedded.judge}}
  self_agreement: 0.0
  test_fraction: 0.0
"""


def test_served_generator_is_started_used_and_stopped(tmp_path, cli):
    pidfile, port = tmp_path / "pids.json", free_port()
    data = _write_prompts(tmp_path / "prompts.jsonl")
    recipe = _recipe(tmp_path, stage(serve_command(port, pidfile)))
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), "--trust-recipe-code", f"dataset.path={data}", "dataset.train_split=train",
                       f"run.output_dir={out}")
    assert code == 0, err
    served = [r for r in _rows(out, "completions.jsonl") if r["model"] == "served"]
    assert len(served) == 12 and all("response" in r for r in served)
    log = (out / "serve-served.log").read_text()
    assert "listening on 127.0.0.1" in log and "GET /v1/models" in log and "POST /v1/chat/completions" in log
    assert gone(pidfile, timeout=5)  # stopped when the generator was done, before the run returned


def test_server_that_dies_while_starting_is_reported_with_its_log(tmp_path, cli):
    pidfile, port = tmp_path / "pids.json", free_port()
    data = _write_prompts(tmp_path / "prompts.jsonl")
    recipe = _recipe(tmp_path, stage(serve_command(port, pidfile, "--fail-after", "0.5")))
    code, _, err = cli(str(recipe), "--trust-recipe-code", f"dataset.path={data}", "dataset.train_split=train",
                       f"run.output_dir={tmp_path / 'run'}")
    assert code == 2
    assert "exited with code 3 before it answered" in err and f"127.0.0.1:{port}/v1/models" in err
    assert "CUDA out of memory while loading the weights (simulated)" in err  # the server's last log lines
    assert gone(pidfile)


@pytest.mark.slow  # waits out a time-out; make test's budget on a slower 2-core machine (make test-slow)
def test_server_that_never_answers_times_out_and_is_stopped(tmp_path, cli):
    pidfile, port = tmp_path / "pids.json", free_port()
    data = _write_prompts(tmp_path / "prompts.jsonl")
    recipe = _recipe(tmp_path, stage(serve_command(port, pidfile, "--startup-delay", "600"), ", serve_timeout: 3"))
    started = time.time()
    code, _, err = cli(str(recipe), "--trust-recipe-code", f"dataset.path={data}", "dataset.train_split=train",
                       f"run.output_dir={tmp_path / 'run'}")
    assert code == 2 and time.time() - started < 120
    assert "did not answer" in err and "within 3s" in err and "loading model served-teacher" in err
    assert gone(pidfile)


@pytest.mark.slow
@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_of_the_runner_stops_the_server(tmp_path, sig, rc):
    pidfile, port = tmp_path / "pids.json", free_port()
    data = _write_prompts(tmp_path / "prompts.jsonl")
    recipe = _recipe(tmp_path, stage(serve_command(port, pidfile, "--reply-delay", "2")))
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # As from a terminal: a shell starts background jobs with SIGINT ignored, and Python keeps it ignored.
    proc = subprocess.Popen([sys.executable, "-m", "zephyr_recipes", "run", str(recipe), "--trust-recipe-code",
                             f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}"],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "serve-served.log"
    end = time.time() + 120
    while not (log.exists() and "POST /v1/chat/completions" in log.read_text() or
               log.exists() and "listening" in log.read_text()):
        assert proc.poll() is None and time.time() < end, proc.stdout.read()[-3000:] if proc.poll() is not None else ""
        time.sleep(0.1)
    time.sleep(0.5)  # mid-generation: each answer takes 2 s
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == rc, output[-3000:]
    assert "server stopped" in output
    assert gone(pidfile)
    assert json.loads((out / "run.json").read_text())["status"] != "complete"


@pytest.mark.parametrize("generator, problem", [
    ('{name: s, type: openai, serve: "vllm serve ./m"}', "cannot tell where `vllm serve ./m` will listen"),
    ('{name: s, type: transformers, model: ./m, serve: "vllm serve ./m --port 8011"}',
     "stage.generators[0].serve belongs to generator type openai, and stage.generators[0].type is transformers"),
])
def test_serve_errors_are_found_before_the_stage_starts(tmp_path, cli, generator, problem):
    recipe = _recipe(tmp_path, f"""  generators:
    - {generator}
  judge: {{type: function, module: zephyr_recipes.embedded.judge}}
""")
    code, _, err = cli("validate", str(recipe))
    assert code == 2 and problem in err, err
