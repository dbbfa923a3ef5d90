"""Chat backends: turn many conversations into completions, yielding each result as soon as it exists.

All three share one call, ``generate(conversations, n, sampling)``, which yields ``(index, texts)`` or
``(index, exception)`` for a request that failed after its retries, so that callers can write every result
to disk the moment it arrives.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Callable, Iterator, TypeVar

from ..core import fingerprint
from ..core.errors import ZephyrError
from ..core.schema import HardwareConfig
from ..model import modeling
from .http import Endpoint, EndpointError
from .specs import BACKEND_OPTIONS, complete

log = logging.getLogger("zephyr_recipes")

Result = Iterator[tuple[int, "list[str] | Exception"]]
T = TypeVar("T")


def load_callable(spec: str) -> Callable:
    """'package.module:function' -> the function, with a clear error when it is not there."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ZephyrError(f"{spec!r} does not name a function", "write it as package.module:function")
    try:
        with fingerprint.import_path():  # the working directory and the recipe's folder, then sys.path
            return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ZephyrError(f"cannot import {spec}: {exc}", import_fix(module_name, attr, exc)) from None


def import_fix(module_name: str, attr: str, exc: Exception) -> str:
    """What to do about a function module that cannot be imported, from why it cannot."""
    where = " or ".join(fingerprint.search_paths())
    if isinstance(exc, AttributeError):
        return f"define {attr} in {module_name}, or name a function that {module_name} has"
    missing = getattr(exc, "name", None)
    if missing and missing != module_name and not module_name.startswith(missing + "."):
        return (f"{module_name} itself imports {missing}, which is not installed: pip install it, or remove that "
                "import")
    return (f"put {module_name.replace('.', '/')}.py in the recipe's folder or the working directory ({where}), or "
            f"add its folder to PYTHONPATH; a function module is found there and on the import path")


class FunctionBackend:
    """A Python function ``f(messages) -> str`` answers (a teacher program, a scripted baseline)."""

    def __init__(self, function: str):
        self.spec = function
        self.fn = load_callable(function)

    def generate(self, conversations: list[list[dict]], n: int = 1, sampling: dict | None = None) -> Result:
        for i, messages in enumerate(conversations):
            try:
                texts = [self.fn(messages) for _ in range(n)]
            except Exception as exc:  # the function's own failure is recorded, not fatal
                yield i, exc
                continue
            bad = [t for t in texts if not isinstance(t, str)]
            if bad:  # the function's bug: stop before anything of it is recorded
                wrong = bad[0]
                raise ZephyrError(f"generator function {self.spec} returned {repr(wrong)[:200]} "
                                  f"({type(wrong).__name__}), and a generator function must return the answer as a "
                                  "str: f(messages: list[dict]) -> str",
                                  f"fix {self.spec} and run the same command again; nothing of it was recorded")
            yield i, texts


class EndpointBackend:
    """An OpenAI-compatible endpoint, with a bounded number of requests in flight."""

    def __init__(self, endpoint: Endpoint, concurrency: int = 8):
        self.endpoint = endpoint
        self.concurrency = max(1, concurrency)

    def generate(self, conversations: list[list[dict]], n: int = 1, sampling: dict | None = None) -> Result:
        sampling = dict(sampling or {})
        if "max_new_tokens" in sampling:
            sampling["max_tokens"] = sampling.pop("max_new_tokens")
        sampling.pop("do_sample", None)

        def one(i: int):
            # Several completions are asked for one at a time: not every server implements n > 1.
            return [self.endpoint.chat(conversations[i], **sampling)[0] for _ in range(n)]

        yield from in_flight(one, len(conversations), self.concurrency)


def in_flight(work: Callable[[int], T], count: int, concurrency: int) -> Iterator[tuple[int, T | EndpointError]]:
    """``work(i)`` for i in range(count), at most ``concurrency`` at a time, yielding ``(i, result)`` as each
    finishes (an EndpointError is yielded as the result; a ZephyrError stops everything).

    The threads are daemons that take the next index only while the caller still listens: on Ctrl-C or SIGTERM
    (or any error) in the caller, no queued request is sent, answers already yielded are the caller's to keep, and
    the requests in flight are abandoned (never recorded, so asked again by the next run) instead of being
    waited for."""
    import queue
    import threading

    todo: "queue.SimpleQueue[int]" = queue.SimpleQueue()
    for i in range(count):
        todo.put(i)
    done: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, work(i), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                done.put((i, None, exc))

    threads = [threading.Thread(target=worker, daemon=True, name=f"request-{k}")
               for k in range(max(1, min(concurrency, count)))]
    for t in threads:
        t.start()
    try:
        for _ in range(count):
            while True:
                try:
                    i, result, exc = done.get(timeout=0.2)  # short waits: signals reach the main thread
                    break
                except queue.Empty:
                    continue
            if exc is None:
                yield i, result
            elif isinstance(exc, EndpointError):
                yield i, exc
            else:
                raise exc
    finally:
        stop.set()


# How a local generator turns a conversation into prompt tokens and its output tokens back into text; the token-parity
# check (runtime/parity.py) calls these same functions.
# How a local generator renders prompts and reads answers (model/prompting.py; the token-parity check uses the same).
from ..model.prompting import DECODE, ENCODE, answer_text, generator_tokenizer, prompt_texts  # noqa: E402,F401


class TransformersBackend:
    """A local causal LM. Prompts are sorted by length and generated in left-padded batches."""

    def __init__(self, model: str, model_cfg: dict | None = None, hardware: HardwareConfig | dict | None = None,
                 batch_size: int | str = "auto", where: str = "model"):
        # where: the recipe's key of model_cfg (named by a missing chat template's fix)
        self.tokenizer, self.placement, cfg = generator_tokenizer(model, model_cfg, hardware, where)
        self.tokenizer.padding_side = "left"
        self.model = modeling.load_model(model, cfg, self.placement).to(self.placement.device).eval()
        self.batch_size = batch_size
        self.name = model

    def _batch_size(self) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        return 64 if self.placement.device == "cuda" else 32

    def generate(self, conversations: list[list[dict]], n: int = 1, sampling: dict | None = None) -> Result:
        import torch
        from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

        sampling = {"max_new_tokens": 128, "temperature": 1.0, "top_p": 1.0, **(sampling or {})}
        temperature = float(sampling.pop("temperature"))
        do_sample = temperature > 0
        gen_kwargs = {"max_new_tokens": int(sampling.pop("max_new_tokens")), "do_sample": do_sample,
                      "num_return_sequences": n, "pad_token_id": self.tokenizer.pad_token_id}
        if do_sample:
            gen_kwargs.update(temperature=temperature, top_p=float(sampling.pop("top_p")))
        else:
            sampling.pop("top_p", None)
        gen_kwargs.update(sampling)
        texts = prompt_texts(self.tokenizer, conversations)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batch_size, s = self._batch_size(), 0
        while s < len(order):
            idx = order[s:s + batch_size]
            try:
                enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                     **ENCODE).to(self.model.device)
                with torch.no_grad():
                    out = self.model.generate(**enc, **gen_kwargs)
            except Exception as exc:
                # Out of memory: halve the batch and try the same prompts again (accelerate's detection).
                if batch_size > 1 and should_reduce_batch_size(exc):
                    batch_size //= 2
                    clear_device_cache(garbage_collection=True)
                    log.warning("generation ran out of memory; batch size now %d", batch_size)
                    continue
                raise
            new_ids = out[:, enc["input_ids"].shape[1]:]
            for j, i in enumerate(idx):
                yield i, [answer_text(self.tokenizer, new_ids[r]) for r in range(j * n, (j + 1) * n)]
            s += len(idx)


def make_backend(spec: dict, hardware: HardwareConfig | dict | None = None, where: str = "model_config"):
    """The backend a generator or judge spec names, with every default of its type filled in. ``where``: the
    recipe's key of the spec's model_config (stage.generators.0.model_config), named by the fix of an error."""
    kind = spec.get("type")
    if kind not in BACKEND_OPTIONS:
        raise ZephyrError(f"unknown backend type {kind!r}", f"use type: {', '.join(BACKEND_OPTIONS)}")
    options = BACKEND_OPTIONS[kind]
    names = {f.name for f in dataclasses.fields(options)}
    spec = complete({k: v for k, v in spec.items() if k in names}, options, f"{kind} backend")
    if kind == "function":
        return FunctionBackend(spec["function"])
    if kind == "openai":
        retries = spec["max_retries"]
        endpoint = Endpoint(base_url=spec["base_url"], model=spec["model"], api_key_env=spec["api_key_env"],
                            timeout=float(spec["timeout"]), backoff=float(spec["backoff"]),
                            **({} if retries is None else {"max_retries": int(retries)}))
        return EndpointBackend(endpoint, int(spec["concurrency"]))
    return TransformersBackend(spec["model"], spec["model_config"], hardware, spec["batch_size"], where)
