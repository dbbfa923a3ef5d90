"""The judge types: one registry, asked where a judge type's name enters (validation of a ``judge:`` section, the
stages that make a judge, the plan, the pre-flight, the cards).

A judge type is one :class:`~zephyr_recipes.feedback.judge_base.Judge` subclass in one module, which declares

- ``type``: its name, the ``type:`` a recipe writes;
- ``Settings``: its typed settings, a :class:`~zephyr_recipes.feedback.specs.JudgeSpec` subclass whose fields carry
  their help text (``zephyr-recipes show`` prints them; validation checks a recipe's keys against them);
- ``KINDS`` (what it can judge: ``rate`` and ``grade`` one answer, ``compare`` and ``verdict`` two, and any kind a
  stage adds, such as a listwise one) and ``BENCHMARKS`` (None: every benchmark asking a kind it can do);
- ``make(spec, hardware, sampling)``: the judge of a checked spec; ``load(role, spec, requests, new_tokens)``: what
  it asks of the machine, for ``plan``;

and one registry line. A type of this package is a line in :data:`BUILTIN`. A type from elsewhere is either

- an installed package's entry point in the group ``zephyr_recipes.judges`` (``name = package.module:Class``, or
  a module whose ``JUDGE`` is the class), read through the registry every seam shares (``core/registry.py``: loaded
  when its name is asked for, trusted as the user installed it, ignored when the package lies in the working
  directory); or
- named by the recipe itself, ``type: package.module:Class``: that is code the recipe runs, so ``validate`` lists
  it and it is imported only after ``--trust-recipe-code`` on the user's own command line.

:func:`register_judge` adds a class (or, in the older form, a name, its settings schema and a maker).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

from ..core import trust
from ..core.errors import ZephyrError
from ..core.registry import Registry
from ..core.schema import HardwareConfig
from . import judge_base
from .judge_base import Judge
from .specs import JUDGE_MAKERS, JUDGE_PROTOCOLS, PLAIN_PROTOCOL, JudgeSpec, complete
from .specs import check_protocol as check_settings

GROUP = "zephyr_recipes.judges"  # the entry point group of installed judge types

# One line per judge type of this package: its class, imported when the registry is first asked.
BUILTIN = (
    "zephyr_recipes.feedback.function_judge:FunctionJudge",
    "zephyr_recipes.feedback.model_judge:TransformersModelJudge",
    "zephyr_recipes.feedback.model_judge:OpenAIModelJudge",
    "zephyr_recipes.feedback.model_judge:VLLMModelJudge",
    "zephyr_recipes.feedback.reward_judge:RewardModelJudge",
)

TYPES: dict[str, type[Judge]] = {}  # judge type -> its Judge class
_loaded = {"builtin": False}

# The judge types of installed packages: entry points in the group zephyr_recipes.judges, each naming the class
# (name = package.module:Class) or a module whose JUDGE is the class; loaded when their name is asked for.
INSTALLED: Registry = Registry("judge type", GROUP, "JUDGE")


def register_judge(judge: Any, schema: Optional[type] = None, make: Optional[Callable] = None) -> type[Judge]:
    """Add a judge type: ``register_judge(JudgeClass)``, the class declaring ``type``, ``Settings``, ``KINDS`` and
    ``make``. The older form ``register_judge(name, schema, make)`` (``make(spec, hardware)`` returning a judge)
    is kept: it is wrapped in a class that declares the same. Returns the class."""
    if isinstance(judge, str):
        judge = _wrapped(judge, schema, make)
    name = getattr(judge, "type", None)
    settings = getattr(judge, "Settings", None)
    if not isinstance(name, str) or not name or not (isinstance(settings, type) and issubclass(settings, JudgeSpec)):
        raise ZephyrError(f"{judge!r} is not a judge type: it needs a name (type = '...') and Settings (a JudgeSpec "
                          "subclass)", "declare both on the class (docs/ai-feedback.md, 'A judge type of your own')")
    TYPES[name] = judge
    JudgeSpec.TYPES[name] = settings  # the recipe's keys are checked against its settings
    return judge


def _wrapped(name: str, schema: Optional[type], make: Optional[Callable]) -> type:
    owner = make if isinstance(make, type) else getattr(make, "__self__", None)
    base = owner if isinstance(owner, type) and issubclass(owner, Judge) else Judge
    maker = make

    def build(cls, spec: dict, hardware: HardwareConfig | dict | None = None, sampling: Optional[dict] = None,
              where: str = "stage.judge"):
        return maker(spec, hardware)  # type: ignore[misc]

    body: dict = {"type": name, "Settings": schema, "make": classmethod(build),
                  "__module__": getattr(make, "__module__", __name__)}
    if base is Judge:  # a plain maker says nothing of what its judges can do: assumed able, and reading prompts
        body.update(can=classmethod(lambda cls, kind, benchmark=None: True), READS_PROMPTS=True)
    return type(f"Registered_{name}", (base,), body)


def _load_builtin() -> None:
    if _loaded["builtin"]:
        return
    _loaded["builtin"] = True
    for ref in BUILTIN:
        register_judge(_import(ref))


def _installed(name: str) -> Optional[type[Judge]]:
    """An installed package's judge type called ``name`` (None: none is), registered on first use. Entry points are
    read through the registry every seam shares (core/registry.py): a package in the working directory is ignored,
    and a name not found is looked for once more (a package installed since the last look)."""
    for again in (False, True):
        if again:
            INSTALLED.forget()
        if name in INSTALLED.plugins():
            cls: Any = INSTALLED.get(name)
            if getattr(cls, "type", None) != name:  # the entry point's name is the type's name
                cls = type(cls.__name__, (cls,), {"type": name, "__module__": cls.__module__})
            return register_judge(cls)
    return None


def _import(ref: str) -> type:
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def is_code(name: Any) -> bool:
    """Whether a judge type names Python code itself (``package.module:Class``)."""
    return isinstance(name, str) and ":" in name


def judge_class(name: Any, where: str = "judge") -> type[Judge]:
    """The class of a judge type: this package's, an installed one, one registered at run time, or one the recipe
    names as ``package.module:Class`` (imported only when the command line trusts the recipe's code)."""
    _load_builtin()
    _forget_unregistered()
    if name in TYPES:
        return TYPES[name]
    if name in JUDGE_MAKERS or name in JudgeSpec.TYPES:  # registered the older way, straight into specs
        return register_judge(name, JudgeSpec.TYPES[name], JUDGE_MAKERS.get(name))
    if is_code(name):
        if not trust.trusted():
            raise ZephyrError(f"{where}.type is {name}: a judge type the recipe's own code defines, which is imported "
                              "only when you trust it",
                              f"read {name.partition(':')[0]}; if you trust it, run again with {trust.FLAG}")
        try:
            cls = _import(name)
        except (ImportError, AttributeError) as exc:
            raise ZephyrError(f"{where}.type is {name}, which does not import ({exc})",
                              "check the module path and the class name (package.module:Class)") from None
        if getattr(cls, "type", None) != name:
            cls = type(cls.__name__, (cls,), {"type": name, "__module__": cls.__module__})
        return register_judge(cls)
    installed = _installed(name) if isinstance(name, str) and name else None
    if installed is not None:
        return installed
    raise ZephyrError(f"{where}.type is {name!r}", f"use one of: {', '.join(sorted(names()))} (or install a package "
                      f"that adds a judge type in the entry point group {GROUP})")


def names() -> list[str]:
    """Every judge type: this package's, those registered at run time, and installed packages' (loaded)."""
    _load_builtin()
    _forget_unregistered()
    for name in [*JudgeSpec.TYPES, *INSTALLED.plugins()]:  # registered the older way, or installed
        if name not in TYPES:
            judge_class(name)
    return list(TYPES)


def _forget_unregistered() -> None:
    """A type taken out of JudgeSpec.TYPES (the older way of unregistering) is gone from here too."""
    for name in [n for n in TYPES if n not in JudgeSpec.TYPES]:
        del TYPES[name]


def _resolve(name: Any, where: str) -> None:
    """JudgeSpec's hook: a name it does not know yet is looked up here (installed, or the recipe's own code)."""
    if isinstance(name, str) and name:
        judge_class(name, where)


JudgeSpec.RESOLVE = staticmethod(_resolve)  # type: ignore[assignment]


# --------------------------------------------------------------------------------- what callers ask of a type
def check_judge(judge_type: str, kind: str, benchmark: str) -> None:
    """Refuse, before anything runs, a judge type that cannot do what ``benchmark`` asks (``kind``)."""
    cls = judge_class(judge_type)
    if not cls.can(kind, benchmark):
        raise cls.refusal(kind, benchmark, judge_type)


def able(kind: str, benchmark: Optional[str] = None) -> list[str]:
    """The judge types that can do ``kind`` (for ``benchmark``)."""
    return sorted(n for n in names() if TYPES[n].can(kind, benchmark))


def check_protocol(where: str, spec: dict) -> None:
    """Refuse a protocol nobody registered, one the judge type cannot be asked with (it is not a chat model), or
    settings the protocol does not read."""
    if spec.get("protocol") not in (None, PLAIN_PROTOCOL):
        cls = judge_class(spec.get("type"), where)
        if not cls.CHAT:
            raise ZephyrError(f"{where} of type {spec.get('type')} {cls.NOT_CHAT} and is asked with no protocol",
                              f"remove {where}.protocol")
    check_settings(where, spec)


def reads_prompts(judge_type: str) -> bool:
    return bool(judge_class(judge_type).READS_PROMPTS)


def make_judge(spec: dict, hardware: HardwareConfig | dict | None = None, sampling: Optional[dict] = None,
               where: str = "stage.judge", checked: bool = False):
    """The judge a spec names. ``sampling``: the caller's settings (a benchmark's token budget, its judge
    temperature, greedy), under the spec's own sampling; ``where``: the spec's key in the recipe, for the fix of an
    error. ``checked``: the spec comes from a validated config (every key of its type's settings filled in and
    checked, its protocol too), so it is not checked again; otherwise (a spec some code wrote) its defaults are
    filled in and checked here. A spec asking with a registered protocol (``protocol: ultrafeedback``) is made by
    that protocol's module."""
    cls = judge_class(spec.get("type"), where)
    if not checked:
        spec = complete(spec, cls.Settings, "judge")
        check_protocol("judge", spec)
    if spec.get("protocol") in JUDGE_PROTOCOLS:  # a way of asking registered by its own module (ultrafeedback)
        return JUDGE_PROTOCOLS[spec["protocol"]][0](spec, hardware, sampling)
    return cls.make(spec, hardware, sampling, where=where)


def judge_load(role: str, spec: dict, requests: int, new_tokens: int) -> dict:
    """What a judge spec asks of the machine, for the plan: its type's cost model."""
    return judge_class(spec.get("type")).load(role, spec, requests, new_tokens)


def summary(spec: dict) -> dict:
    """What scores.json and the cards say of a judge: its type, what it is, and whether its figures measure only
    that the pipeline works (a program, not a model)."""
    out = {k: spec.get(k) for k in ("type", "module", "model", "base_url") if spec.get(k)}
    if pipeline_check(spec):
        out["pipeline_check"] = True
    return out


def pipeline_check(summary_or_spec: dict) -> bool:
    """Whether a judge's figures measure only that the pipeline works (older scores.json files: by its type)."""
    if summary_or_spec.get("pipeline_check"):
        return True
    name = summary_or_spec.get("type")
    try:
        return bool(name) and bool(judge_class(name).PIPELINE_CHECK)
    except ZephyrError:
        return False


def served(spec: dict) -> bool:
    """Whether the runner serves this judge itself for the stage's duration."""
    return bool(judge_class(spec.get("type")).SERVED)


def probed(spec: dict) -> bool:
    """Whether the pre-flight asks this judge one constructed item before the run (an endpoint, or a server the
    runner starts, is checked by its key and address instead)."""
    return bool(judge_class(spec.get("type")).PROBED) and not spec.get("serve")


def rehearsal(spec: dict, is_hub: Callable[[Any], bool]) -> bool:
    """Whether a rehearsal replaces this judge by the embedded judge program (it calls out, or loads a hub model)."""
    return bool(judge_class(spec.get("type")).calls_out(spec, is_hub))


judge_base.able_types = able  # the refusal of a judge asked what its type cannot do names the types that can
