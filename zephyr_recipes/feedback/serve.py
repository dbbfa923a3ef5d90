"""Served generators and judges: an OpenAI-compatible server the runner starts, uses and stops.

A generator or judge of ``type: openai`` may name a command instead of (or with) a URL::

    - name: sft
      type: openai
      serve: "vllm serve ./runs/zephyr-7b-sft --port 8011"   # or: trl vllm-serve --model ... --port 8011

The runner starts the command in its own process group, waits until ``<base_url>/models`` answers (at most
``serve_timeout`` seconds; on failure the error quotes the server's last log lines), uses it through the
ordinary OpenAI-compatible client, and stops the whole group when the stage is done with it: on success, on
an error, on Ctrl-C and on SIGTERM. The server also gets SIGTERM if the runner itself dies (Linux
PR_SET_PDEATHSIG), so no server outlives its run. Without ``base_url`` it is http://127.0.0.1:<--port>/v1;
without ``model`` the first model the server lists.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ..core.errors import ZephyrError
from .vllm import as_openai

log = logging.getLogger("zephyr_recipes")
DEFAULT_TIMEOUT_S = 900.0  # a 7B model's weights load and CUDA graphs capture in a few minutes
STOP_GRACE_S = 20.0
LOG_LINES = 20


def base_url_of(spec: dict) -> str:
    if spec.get("base_url"):
        return str(spec["base_url"]).rstrip("/")
    m = re.search(r"--port[= ](\d+)", str(spec.get("serve", "")))
    if not m:
        raise ZephyrError(f"cannot tell where `{spec['serve']}` will listen",
                          "add --port N to the serve command, or set base_url: http://127.0.0.1:N/v1")
    return f"http://127.0.0.1:{m.group(1)}/v1"


def _die_with_parent() -> None:
    """In the server's process, before exec: get SIGTERM when the runner dies, even by SIGKILL (Linux)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class Server:
    """One served model: ``with Server(spec, log_path) as spec2:`` yields the spec with base_url and model."""

    def __init__(self, spec: dict, log_path: Path, timeout: float | None = None):
        self.spec = dict(spec)
        self.command = str(spec["serve"])
        self.base_url = base_url_of(spec)
        self.log_path = Path(log_path)
        self.timeout = float(timeout if timeout is not None else spec.get("serve_timeout", DEFAULT_TIMEOUT_S))
        self.proc: subprocess.Popen | None = None
        self._previous_term: Callable[[int, FrameType | None], Any] | int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> dict:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise ZephyrError(f"cannot parse serve command {self.command!r}: {exc}", "check its quoting") from None
        self._refuse_taken_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        log.info("serving: %s (log: %s)", self.command, self.log_path)
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        except FileNotFoundError:
            raise ZephyrError(f"serve command not found: {argv[0]}",
                              "install it (e.g. pip install vllm) or give its full path in serve") from None
        finally:
            out.close()
        self._watchdog = _watch(self.proc.pid)
        self._catch_sigterm()
        try:
            models = self._wait_ready(self.proc)
        except BaseException:
            self.stop()
            raise
        spec = {k: v for k, v in self.spec.items() if k not in ("serve", "serve_timeout")}
        spec["base_url"] = self.base_url
        if not spec.get("model"):
            if not models:
                self.stop()
                raise ZephyrError(f"the server at {self.base_url} lists no model", "set model: <name> in the spec")
            spec["model"] = models[0]
        log.info("server ready at %s (model %s, pid %d)", self.base_url, spec["model"], self.proc.pid)
        return spec

    def _wait_ready(self, proc: subprocess.Popen) -> list[str]:
        deadline = time.monotonic() + self.timeout
        url = self.base_url + "/models"
        while True:
            code = proc.poll()
            if code is not None:
                raise ZephyrError(f"the server `{self.command}` exited with code {code} before it answered "
                                  f"{url}; its last log lines:\n{self.tail()}",
                                  f"fix the command (its full log: {self.log_path})")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    payload = json.loads(response.read().decode() or "{}")
                data = payload.get("data") if isinstance(payload, dict) else None
                return [m["id"] for m in data or [] if isinstance(m, dict) and m.get("id")]
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ZephyrError(f"the server `{self.command}` did not answer {url} within {self.timeout:g}s; "
                                  f"its last log lines:\n{self.tail()}",
                                  "raise serve_timeout, or check the port and the log " + str(self.log_path))
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after STOP_GRACE_S; waits until it is gone."""
        proc, self.proc = self.proc, None
        self._restore_sigterm()
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the server started and left behind in its group
        watchdog, self._watchdog = getattr(self, "_watchdog", None), None
        if watchdog is not None:
            with contextlib.suppress(OSError):
                watchdog.stdin.close()  # its job is done: it exits without touching anything
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=5)
        log.info("server stopped: %s", self.command)

    def _refuse_taken_port(self) -> None:
        """A server already listening where this one would (an orphan of a killed run, another program) would be
        used silently instead of the one the recipe names: refuse, naming it."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port
        if port is None or host not in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):
            return
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            taken = s.connect_ex(("127.0.0.1", port)) == 0
        if taken:
            holder = port_holder(port)
            raise ZephyrError(f"port {port} is already taken{' by ' + holder if holder else ''}, so `{self.command}` "
                              f"could not listen there and the run would talk to that process instead",
                              "stop that process (an orphan of an earlier run can be killed) or give the serve "
                              "command another --port")

    def tail(self, n: int = LOG_LINES) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=n)).rstrip() or "(empty log)"
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ SIGTERM while serving
    def _catch_sigterm(self) -> None:
        """A SIGTERM to the runner unwinds (SystemExit 143) so that the server is stopped on the way out."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum, frame):
            raise SystemExit(128 + signum)

        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            self._previous_term = previous
            signal.signal(signal.SIGTERM, on_term)

    def _restore_sigterm(self) -> None:
        if self._previous_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_term)
            self._previous_term = None

    def __enter__(self) -> dict:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def port_holder(port: int) -> str | None:
    """'process PID (command line)' listening on a TCP port of this machine (Linux /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    f = line.split()
                    if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f[9])
        except OSError:
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"process {pid} ({cmd[:200]})"
        except OSError:
            continue
    return "a process of another user"


WATCHDOG = """
import os, signal, sys, time
pgid = int(sys.argv[1])
sys.stdin.buffer.read()  # returns when the runner closes the pipe or dies, however it dies
try:
    os.killpg(pgid, signal.SIGTERM)
except ProcessLookupError:
    sys.exit(0)
for _ in range(int(float(sys.argv[2]) * 10)):
    time.sleep(0.1)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        sys.exit(0)
try:
    os.killpg(pgid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def _watch(pgid: int):
    """A small process outside the server's group that stops the whole group (whatever shell wraps the server)
    when the runner dies, even by SIGKILL: it waits on a pipe only the runner holds. On a clean stop the runner
    closes the pipe after the group is gone, and the watchdog finds nothing to stop."""
    try:
        return subprocess.Popen([sys.executable, "-c", WATCHDOG, str(pgid), str(STOP_GRACE_S)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError:
        return None


@contextlib.contextmanager
def serving(spec: dict, log_dir: Path, name: str):
    """The spec as is when it names no server; otherwise the served spec, for the duration of the block."""
    if spec.get("type") == "vllm":  # the serve command written from the spec (see .vllm)
        spec = as_openai(spec)
    if not spec.get("serve"):
        yield spec
        return
    if spec.get("type") != "openai":
        raise ZephyrError(f"{name}: serve applies to type: openai (a server speaking OpenAI's API)",
                          "set type: openai, or drop serve")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    with Server(spec, Path(log_dir) / f"serve-{safe}.log") as served:
        yield served
