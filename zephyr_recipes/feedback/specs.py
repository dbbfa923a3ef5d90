"""The schemas of the models that answer (generators) and of judges, one class per ``type``, defaults stated once.

A recipe writes ``type: transformers | openai | function`` (and, for judges, any type a stage module registers,
such as ``reward_model``); validation picks the class of that type and checks the keys against it, so a key of
another type, a misspelt key or a missing model is named before anything loads. :func:`complete` gives the
backends a spec with every default filled in, whatever wrote it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from ..core.errors import ZephyrError
from ..core.safety import refuse_url_credentials
from ..core.schema import check_section, option
from .serve import base_url_of
from .vllm import VLLMOptions

SERVE_HELP = ("A command that starts an OpenAI-compatible server (vLLM, TGI, llama.cpp ...) with --port N; the "
              "runner starts it, waits until it answers, and stops it. base_url and model then default to its "
              "port and the first model it lists.")


class _Typed:
    """A schema whose ``type`` key picks the class that checks the rest."""

    TYPES: ClassVar[dict[str, type]]
    KIND: ClassVar[str]

    @classmethod
    def variant(cls, where: str, values: dict) -> type:
        kind = values.get("type")
        types = cls.TYPES
        resolve = getattr(cls, "RESOLVE", None)
        if kind not in types and resolve is not None:  # a judge type registered elsewhere (see .judge_registry)
            resolve(kind, where)
        if kind not in types:
            raise ZephyrError(f"{where}.type is {kind!r}", f"use one of: {', '.join(types)}")
        return types[kind]

    @classmethod
    def unknown_key(cls, where: str, key: str) -> None:
        """A key of another type, left over after an override changed the type: say which type it belongs to."""
        owner = next((t for t, c in cls.TYPES.items() if key in {f.name for f in dataclasses.fields(c)}), None)
        if owner is not None:
            path = re.sub(r"\[(\d+)\]", r".\1", where)
            mine = next((t for t, c in cls.TYPES.items() if c is cls), "?")
            raise ZephyrError(f"{where}.{key} belongs to {cls.KIND} type {owner}, and {where}.type is {mine}",
                              f"drop it: add ~{path}.{key} to the overrides (or set {path}.type={owner})")


# --------------------------------------------------------------------------------------------- generators
@dataclass
class GeneratorSpec(_Typed):
    name: Optional[str] = option(None, "Name of the generator in the data (models column); default generator<i>.")
    type: str = option("???", "transformers (a local model), vllm (a model the runner serves with vLLM), openai (an "
                          "OpenAI-compatible endpoint) or function (package.module:function answering "
                          "f(messages) -> str).")
    num_completions: Optional[int] = option(None, "Completions per prompt; default the stage's num_completions.")
    sampling: dict = option({}, "Sampling settings over the stage's (temperature, top_p, max_new_tokens ...).")

    KIND: ClassVar[str] = "generator"


@dataclass
class TransformersOptions:
    model: str = option("???", "Hub id, local folder or run folder of the model.")
    model_config: dict = option({}, "Model options as in the model section (revision, dtype, chat_template ...).")
    batch_size: Any = option("auto", "Prompts per generation batch (auto: 64 on a GPU, 32 on the CPU); halved on "
                                 "out-of-memory.")


@dataclass
class OpenAIOptions:
    base_url: Optional[str] = option(None, "The endpoint, e.g. http://localhost:8000/v1 (required unless serve).")
    model: Optional[str] = option(None, "The model name the endpoint serves (required unless serve).")
    api_key_env: Optional[str] = option(None, "Environment variable holding the API key (never the key itself).")
    concurrency: int = option(8, "Requests in flight at once.")
    timeout: float = option(60.0, "Seconds to wait for one reply.")
    max_retries: Optional[int] = option(None, "Retries of a failed request (429, 5xx, timeouts); null: 4. For a "
                                          "judge also the re-asks of an unparsable reply; null: 2.")
    backoff: float = option(1.0, "First wait in seconds between retries; it doubles each time.")
    serve: Optional[str] = option(None, SERVE_HELP)
    serve_timeout: float = option(900.0, "Seconds to wait for the served model to answer (weights load, graphs "
                                     "capture).")

    @classmethod
    def after_check(cls, where: str, values: dict) -> None:
        if values["base_url"]:
            refuse_url_credentials(f"{where}.base_url", values["base_url"])
        if not values["serve"]:
            missing = [k for k in ("base_url", "model") if not values[k]]
            if missing:
                raise ZephyrError(f"{where} of type openai needs {', '.join(missing)}",
                                  f"add {where}.{missing[0]}=... (or serve: a command that starts the server)")
        else:
            base_url_of(values)  # where it will listen: refused now, not after the stage started


@dataclass
class TransformersGenerator(TransformersOptions, GeneratorSpec):
    pass


@dataclass
class OpenAIGenerator(OpenAIOptions, GeneratorSpec):
    pass


@dataclass
class FunctionOptions:
    function: str = option("???", "package.module:function called as f(messages) -> str.")


@dataclass
class FunctionGenerator(FunctionOptions, GeneratorSpec):
    pass


GeneratorSpec.TYPES = {"transformers": TransformersGenerator, "openai": OpenAIGenerator,
                       "function": FunctionGenerator}
BACKEND_OPTIONS = {"transformers": TransformersOptions, "openai": OpenAIOptions, "function": FunctionOptions}


# ------------------------------------------------------------------------------------------------- judges
@dataclass
class JudgeSpec(_Typed):
    type: str = option("???", "function (a module of rating functions), transformers (a local chat model), openai (an "
                          "OpenAI-compatible endpoint), vllm, reward_model, a type an installed package adds "
                          "(entry point group zephyr_recipes.judges), or package.module:Class (the recipe's own "
                          "judge type: needs --trust-recipe-code).")
    prompt: Optional[str] = option(None, "AI feedback: the rating prompt, text or a .txt/.jinja/.md file, with "
                                     "{instruction} and {response}; null: this project's single-answer JSON rubric.")
    system: Optional[str] = option(None, "A system message sent before every judge prompt.")
    aspects: Optional[list] = option(None, "AI feedback: the aspects rated; null: UltraFeedback's four.")
    scale: list = option([1, 5], "AI feedback: the lowest and highest rating.")
    sampling: dict = option({}, "The judge's sampling settings (greedy by default).")
    max_retries: Optional[int] = option(None, "Re-asks of a reply that does not parse; null: 2 (type openai: also the "
                                          "retries of a failed request; null: 4).")
    protocol: Optional[str] = option(None, "AI feedback: how a chat model is asked to rate. null or single_answer: this "
                                     "project's own rubric, one answer per request, all aspects in one JSON reply "
                                     "(prompt, aspects, scale); ultrafeedback: UltraFeedback's published annotation "
                                     "protocol, one request per aspect with 4 answers side by side, its templates and "
                                     "sampling (docs/ai-feedback.md). With type function, the module's chat(messages) "
                                     "plays the chat model.")

    KIND: ClassVar[str] = "judge"
    RESOLVE: ClassVar[Any] = None  # the judge registry's look-up of a type not known yet (set by .judge_registry)


@dataclass
class TransformersJudge(TransformersOptions, JudgeSpec):
    pass


@dataclass
class OpenAIJudge(OpenAIOptions, JudgeSpec):
    pass


@dataclass
class FunctionJudgeSpec(JudgeSpec):
    module: str = option("???", "A module with rate(messages, response), grade(messages, response[, reference]) "
                            "and compare(messages, a, b).")


@dataclass
class VLLMGenerator(VLLMOptions, GeneratorSpec):
    pass


@dataclass
class VLLMJudge(VLLMOptions, JudgeSpec):
    pass


GeneratorSpec.TYPES["vllm"] = VLLMGenerator
JudgeSpec.TYPES = {"function": FunctionJudgeSpec, "transformers": TransformersJudge, "openai": OpenAIJudge,
                   "vllm": VLLMJudge}


@dataclass
class RewardModelJudgeSpec(JudgeSpec):
    model: str = option("???", "Reward run folder (stage=reward), local folder or hub id of a sequence-"
                           "classification model with one output.")
    model_config: dict = option({}, "Model options as in the model section (revision, dtype, chat_template ...); "
                                "chat_template null keeps the one the reward model was trained with.")
    batch_size: Any = option("auto", "Conversations scored per batch (auto: 64 on a GPU, 16 on the CPU).")
    max_length: Optional[int] = option(None, "Tokens kept of a longer conversation (its start); null keeps all.")

    @classmethod
    def after_check(cls, where: str, values: dict) -> None:
        if values.get("prompt"):
            raise ZephyrError(f"{where} of type reward_model scores the conversation itself and takes no prompt",
                              f"remove {where}.prompt")
        size = values.get("batch_size")
        if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ZephyrError(f"{where}.batch_size is {size!r}", "use auto or a whole number of 1 or more")


JudgeSpec.TYPES["reward_model"] = RewardModelJudgeSpec  # a trained reward model (stage=reward) as judge

# Where a spec's model lives, for the pre-flight and validation: "here" (loaded in this process: its local folder
# must exist and hold whole weight files), "served" (a server the runner starts loads it), None (no model file).
_where: str
for _schema, _where in ((TransformersOptions, "here"), (RewardModelJudgeSpec, "here"), (VLLMGenerator, "served"),
                        (VLLMJudge, "served")):
    setattr(_schema, "LOADS", _where)  # noqa: B010 - a mark on four classes, read with getattr


def _schemas(spec) -> list:
    kind = spec.get("type") if isinstance(spec, dict) else None
    return [t[kind] for t in (GeneratorSpec.TYPES, JudgeSpec.TYPES) if isinstance(kind, str) and kind in t]


def calls_endpoint(spec) -> bool:
    """Whether a generator or judge spec names an OpenAI-compatible endpoint the run does not start itself."""
    return any(issubclass(s, OpenAIOptions) for s in _schemas(spec)) and bool(spec.get("base_url")) \
        and not spec.get("serve")


def model_location(spec) -> Optional[str]:
    """Where a generator or judge spec's ``model`` is loaded: "here", "served" or None (see LOADS above)."""
    found = [getattr(s, "LOADS", None) for s in _schemas(spec)]
    return next((w for w in found if w), None) if isinstance(spec.get("model"), str) else None
JUDGE_MAKERS: dict = {}  # type -> make(spec, hardware) for judge types added with register_judge
# protocol -> (make(spec, hardware, sampling), check(where, spec)) for the ways of asking a judge added with
# register_protocol (feedback/ultrafeedback.py adds ultrafeedback)
JUDGE_PROTOCOLS: dict = {}
PLAIN_PROTOCOL = "single_answer"  # this project's own single-answer rubric (the judges' usual prompt)


def register_protocol(name: str, make, check) -> None:
    """Add a way of asking a judge: ``make(spec, hardware, sampling)`` builds the judge of a spec naming it,
    ``check(where, spec)`` refuses what it cannot read."""
    JUDGE_PROTOCOLS[name] = (make, check)


def check_protocol(where: str, spec: dict) -> None:
    """Refuse a protocol nobody registered, or settings it does not read (whether the judge type can be asked with
    one at all: judge_registry.check_protocol, which calls this)."""
    name = spec.get("protocol")
    if name in (None, PLAIN_PROTOCOL):
        return
    if name not in JUDGE_PROTOCOLS:
        raise ZephyrError(f"{where}.protocol is {name!r}", f"use one of: {PLAIN_PROTOCOL}, {', '.join(JUDGE_PROTOCOLS)}")
    JUDGE_PROTOCOLS[name][1](where, spec)


def register_judge(kind: str, schema: type, make) -> None:
    """Add a judge type: ``schema`` (a JudgeSpec subclass) checks its keys, ``make(spec, hardware)`` builds it."""
    JudgeSpec.TYPES[kind] = schema
    JUDGE_MAKERS[kind] = make


def complete(spec: dict, schema: type, where: str = "spec") -> dict:
    """``spec`` with every default of its type filled in (and checked), whatever wrote it."""
    return check_section(where, spec, schema)


def served_model(command: str) -> str | None:
    """The model a serve: command serves (`vllm serve NAME`, `--model NAME`), for the plan."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words[:-1]):
        if word in ("--model", "--model-path", "--model-id", "-m") and not words[i + 1].startswith("-"):
            return words[i + 1]
        if word == "serve" and not words[i + 1].startswith("-"):
            return words[i + 1]
    return None


def load_of(role: str, spec: dict, requests: int, new_tokens: int) -> dict:
    """What one generator or judge spec asks of the machine, for the plan (see TaskStage.loads)."""
    kind = spec.get("type")
    out = {"role": role, "requests": int(requests), "new_tokens": int(new_tokens), "spec": spec, "batch": 64}
    if kind == "vllm":
        return {**out, "how": "served", "model": spec.get("model") or "?", "batch": spec.get("concurrency") or 32}
    if kind == "openai":
        if spec.get("serve"):
            return {**out, "how": "served", "model": served_model(spec["serve"]) or spec.get("model") or "?",
                    "batch": spec.get("concurrency") or 8}
        return {**out, "how": "api", "model": f"{spec.get('model')} at {spec.get('base_url')}"}
    if kind == "function":
        return {**out, "how": "function", "model": spec.get("function") or spec.get("module") or "?"}
    batch = spec.get("batch_size")
    return {**out, "how": "local", "model": spec.get("model") or "?",
            "batch": batch if isinstance(batch, int) and not isinstance(batch, bool) else 64}
