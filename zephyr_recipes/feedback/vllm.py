"""``type: vllm``: a generator, an AI-feedback judge or an evaluated model served by vLLM, with the serve command
written for you.

    generators:
      - {name: sft, type: vllm, model: ./runs/tiny-sft, max_model_len: 1024}

The runner starts vLLM's OpenAI-compatible server on a free port of this machine, waits until it answers, sends
the requests through the same client as any ``type: openai`` endpoint and stops the server's whole process group
when the stage is done with it (:mod:`.serve`). Which vLLM: ``$ZEPHYR_VLLM_PYTHON`` (an interpreter with vLLM
installed), else the project's ``.venv-vllm`` that ``make vllm`` builds (the CPU build here, the CUDA build where
there is a GPU), else ``vllm`` on the PATH. The command is built from the spec's keys, word by word (no shell), so
a recipe cannot run anything else through it, and it never passes ``--trust-remote-code``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import option
from ..model.modeling import cuda_available, resolve_source

VENV = Path(__file__).resolve().parent.parent.parent / ".venv-vllm"
REFUSED_ARGS = ("--trust-remote-code", "--trust_remote_code")


@dataclass
class VLLMOptions:
    model: str = option("???", "Local folder, run folder or hub id of the model vLLM serves.")
    max_model_len: Optional[int] = option(None, "vLLM's --max-model-len (prompt + answer tokens); null: the model's.")
    dtype: str = option("auto", "vLLM's --dtype: auto, bfloat16, float16, float32.")
    args: list = option([], "Further vLLM server arguments, e.g. [--gpu-memory-utilization, '0.8'] "
                            "(--trust-remote-code is refused).")
    concurrency: int = option(32, "Requests in flight at once (vLLM batches them).")
    timeout: float = option(300.0, "Seconds to wait for one reply.")
    max_retries: Optional[int] = option(None, "Retries of a failed request; null: the openai type's default.")
    backoff: float = option(1.0, "First wait in seconds between retries; it doubles each time.")
    serve_timeout: float = option(900.0, "Seconds to wait for the server to answer (weights load, warm-up).")

    @classmethod
    def after_check(cls, where: str, values: dict) -> None:
        args = values["args"] or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise ZephyrError(f"{where}.args must be a list of server arguments", "e.g. args: [--max-num-seqs, '64']")
        bad = [a for a in map(str, args) if a.split("=")[0] in REFUSED_ARGS]
        if bad:
            raise ZephyrError(f"{where}.args asks vLLM to {bad[0]}: that runs the model repository's own code",
                              "serve a model that needs no remote code, or run vLLM yourself and name it as "
                              "type: openai with base_url")


def python() -> list[str]:
    """The command that starts vLLM's OpenAI server."""
    chosen = os.environ.get("ZEPHYR_VLLM_PYTHON")
    if chosen:
        return [chosen, "-m", "vllm.entrypoints.openai.api_server"]
    if (VENV / "bin" / "python").is_file():
        return [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    if shutil.which("vllm"):
        return ["vllm", "serve"]
    raise ZephyrError("type: vllm needs vLLM, and neither $ZEPHYR_VLLM_PYTHON, the project's .venv-vllm nor a vllm "
                      "command is there", "run `make vllm` (a separate environment: vLLM pins its own torch), or "
                      "set ZEPHYR_VLLM_PYTHON to an interpreter that has vLLM")


CPU_MEMORY_SHARE = 0.2


def _cuda() -> bool:
    return cuda_available()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_template_arg(spec: dict) -> Optional[str]:
    """The template the server renders chat requests with when ``args`` gives ``--chat-template`` (a file or the
    template itself); None: the served model's own. The server renders with the generation prompt and tokenizes the
    result without adding special tokens (vLLM's chat endpoint defaults)."""
    args = [str(a) for a in spec.get("args") or []]
    for i, a in enumerate(args):
        if a.startswith("--chat-template="):
            return a.split("=", 1)[1]
        if a == "--chat-template" and i + 1 < len(args):
            return args[i + 1]
    return None


def as_openai(spec: dict) -> dict:
    """The spec as ``type: openai`` with the ``serve`` command that starts vLLM on a free port."""
    model = resolve_source(str(spec["model"]), "model")  # builtin:// and run folders become their local folders
    base = python()
    head = base + ([model] if base[-1] == "serve" else ["--model", model])
    cmd = head + ["--port", str(_free_port()), "--served-model-name", str(spec["model"]), "--dtype",
                  str(spec.get("dtype") or "auto")]
    if spec.get("max_model_len"):
        cmd += ["--max-model-len", str(int(spec["max_model_len"]))]
    extra = [str(a) for a in spec.get("args") or []]
    if not any(a.startswith("--gpu-memory-utilization") for a in extra) and not _cuda():
        # On the CPU the flag is the share of the machine's memory vLLM reserves (0.92 by default, which the
        # training process beside it rarely leaves free).
        extra = ["--gpu-memory-utilization", str(CPU_MEMORY_SHARE), *extra]
    cmd += extra
    keep = {k: v for k, v in spec.items() if k not in VLLMOptions.__dataclass_fields__ and k != "type"}
    return {**keep, "type": "openai", "model": str(spec["model"]), "base_url": None, "api_key_env": None,
            "concurrency": spec.get("concurrency", 32), "timeout": spec.get("timeout", 300.0),
            "max_retries": spec.get("max_retries"), "backoff": spec.get("backoff", 1.0),
            "serve": " ".join(shlex.quote(c) for c in cmd), "serve_timeout": spec.get("serve_timeout", 900.0)}

