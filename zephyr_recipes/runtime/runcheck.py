"""The pre-flight of what a run will run later: after the trust gate, before the first answer is generated.

`preflight.py` checks what lies outside the process (keys, endpoints, paths, disk). This module runs, in seconds,
the pieces of the run that would otherwise fail only after hours of generation:

- every function module the config names (``type: function``: a generator's ``function``, a judge's ``module``)
  is imported, from the working directory, the recipe's folder or the import path (core/fingerprint.py);
- every local generator's and judge's tokenizer is loaded (types transformers, vllm, reward_model) and its chat
  template checked: the fix names the key of that generator or judge (``stage.generators.N.model_config.
  chat_template``, or vLLM's ``args`` for a served model);
- one constructed item (an embedded task and its right answer) goes through each judge the stage declares
  (``Stage.judge_probes``): a local judge answers it, so a judge whose reply does not parse fails now. An API
  judge is checked by its key and endpoint (preflight.py) and a judge the runner serves (vllm, serve:) is not
  started here.

Models and folders an earlier stage of the same pipeline writes do not exist yet, and are skipped.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from ..core.errors import ZephyrError
from ..core.recipe import Recipe, section_of
from ..core.schema import ModelConfig
from ..embedded import tasks
from ..stages.base import Stage, code_refs_in
from . import stagespecs

log = logging.getLogger("zephyr_recipes")
_checked_tokenizers: dict[tuple, None] = {}  # (model, template) already loaded in this process


def _override_path(where: str) -> str:
    """stage.generators[2] -> stage.generators.2 (how a command line names it)."""
    return re.sub(r"\[(\d+)\]", r".\1", where)


def import_modules(recipe: Recipe) -> list[str]:
    """Import every function module the recipe's stage section names; the error names the key that names it."""
    import importlib

    from ..core import fingerprint  # lazy: start-up

    lines, seen = [], set()
    for ref in code_refs_in({"stage": stagespecs.section(recipe)}):
        if ref.module is None or ref.module in seen:
            continue
        seen.add(ref.module)
        from ..feedback.backends import import_fix, load_callable  # lazy: start-up (only a recipe naming a module)

        name = (cfg_value(recipe.config, ref.where) or ref.module) if ref.where.endswith(".function") else ref.module
        try:
            if ":" in str(name):
                load_callable(str(name))
            else:
                with fingerprint.import_path():
                    importlib.import_module(ref.module)
        except ZephyrError as exc:
            raise ZephyrError(f"{ref.where} = {name}: {exc.problem}; nothing was generated", exc.fix) from None
        except ImportError as exc:
            raise ZephyrError(f"{ref.where} = {name}: cannot import it: {exc}; nothing was generated",
                              import_fix(ref.module, "", exc)) from None
        except Exception as exc:  # noqa: BLE001 - the module's own code failed on import
            raise ZephyrError(f"{ref.where} = {name}: importing it fails: {type(exc).__name__}: {exc}; nothing was "
                              "generated", f"fix {ref.module} (it fails when imported) and run the same command "
                              "again") from None
        lines.append(f"{ref.where}: {name} imports")
    return lines


def cfg_value(cfg: dict, where: str):
    node = cfg
    for part in re.findall(r"[^.\[\]]+", where):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
    return node


def _produced(model: str, produced: set[str] | None) -> bool:
    p = Path(model).expanduser()
    return not p.exists() and any(p.resolve() == Path(q).resolve() or Path(q).resolve() in p.resolve().parents
                                  for q in produced or ())


def check_templates(recipe: Recipe, produced: set[str] | None = None) -> list[str]:
    """Load each local generator's and judge's tokenizer and check that it has a chat template to answer with."""
    from ..model import chat_format, modeling  # lazy: start-up

    lines = []
    for where, spec in stagespecs.with_model(recipe):  # a model loaded here or served by the runner
        model = spec["model"]
        if _produced(model, produced):
            lines.append(f"{where}: {model} is written by an earlier stage; its tokenizer is checked when it runs")
            continue
        model_cfg = dict(spec.get("model_config") or {})
        # The generator's model section, typed as modeling.standalone types it: one tokenizer per template and revision.
        asked = section_of(ModelConfig, {"chat_template": None, **model_cfg, "name_or_path": model})
        key = (model, str(asked.chat_template), str(asked.revision))
        if key in _checked_tokenizers:
            continue
        path = _override_path(where)
        try:
            mcfg, _ = modeling.standalone(model, model_cfg, None, "generation")
            tokenizer = modeling.open_tokenizer(mcfg)
            has_own = bool(getattr(tokenizer, "chat_template", None))
            from ..feedback.specs import model_location  # lazy: start-up (only a generator or judge with a model)

            if model_location(spec) == "served":  # vLLM answers chat requests with the tokenizer's template
                if not has_own and not any("chat-template" in str(a) for a in spec.get("args") or []):
                    raise ZephyrError(
                        f"{where}: the tokenizer of {model} has no chat template, and vLLM answers chat requests "
                        "with the tokenizer's template; nothing was generated",
                        f"give vLLM one: {path}.args=[--chat-template,{chat_format.TEMPLATES / 'zephyr.jinja'}]"
                        " (or another .jinja file), or serve a model whose tokenizer has one")
            else:
                chat_format.choose(tokenizer, mcfg, assistant_only=False, model_name=model)
        except ZephyrError as exc:
            if "model.chat_template" in (exc.fix or ""):
                shipped = ", ".join(chat_format.shipped_names())
                raise ZephyrError(f"{where}: {exc.problem}; nothing was generated",
                                  f"set {path}.model_config.chat_template=zephyr on the command line (or in the "
                                  f"recipe), or another shipped template ({shipped}), or a path to a .jinja "
                                  "file") from None
            if exc.problem.startswith(where):
                raise
            raise ZephyrError(f"{where}: {exc.problem}", exc.fix) from None
        _checked_tokenizers[key] = None
        lines.append(f"{where}: tokenizer of {model} loads and has a chat template")
    return lines


def probe_item():
    """One constructed item: an embedded task and its right answer."""
    from ..feedback.judges import Item  # lazy: start-up

    task = tasks.sample(random.Random(0))
    return Item([{"role": "user", "content": task.instruction}], (task.answer,))


def check_judges(recipe: Recipe, stage: Stage, produced: set[str] | None = None) -> list[str]:
    """Put one constructed item through each judge the stage declares; a reply that does not parse fails here."""
    lines = []
    for where, spec, asks, title in stage.judge_probes(recipe):
        from ..feedback import judge_registry  # lazy: start-up (only a stage with a judge)
        from ..feedback.judges import Item, JudgeFailure, make_judge  # lazy: start-up (only a stage with a judge)

        kind = spec.get("type")
        if not judge_registry.probed(spec):
            served = judge_registry.served(spec) or spec.get("serve")
            lines.append(f"{where}: a {kind} judge{' the runner serves' if served else ''}"
                         " is checked by its key and endpoint, not asked")
            continue
        if isinstance(spec.get("model"), str) and _produced(spec["model"], produced):
            lines.append(f"{where}: {spec['model']} is written by an earlier stage; not asked before it exists")
            continue
        judge = make_judge(spec, recipe.hardware, checked=True)  # a spec of the validated config
        verdict = None
        try:
            if asks == "rate" and judge.listwise:  # rates a prompt's answers together: asked with two side by side
                item = probe_item()
                item = Item(item.messages, (*item.answers, "I do not know."), seed=0)
                verdict = next(iter(judge.rate_lists([item])))[1]
            else:
                verdict = next(iter(judge.ask(asks, [probe_item()], title)))[1]
        except ZephyrError as exc:  # a function judge's result of the wrong shape: its own bug
            raise ZephyrError(f"{where} could not {asks} a constructed answer before the run: {exc.problem}; nothing "
                              "was generated", exc.fix) from None
        finally:
            del judge
        if isinstance(verdict, JudgeFailure):
            fix = (f"fix {spec['module']}.{asks} so that it returns what the stage reads (see docs/ai-feedback.md), "
                   "then run the same command again" if spec.get("module") else
                   f"give a judge that answers in the format its parser reads: an instruction-tuned model, or a "
                   f"prompt that asks for that format ({_override_path(where)}.prompt=<file.txt>), or another "
                   f"judge type ({_override_path(where)}.type=...)")
            raise ZephyrError(f"{where} could not {asks} a constructed answer before the run: {verdict}; nothing was "
                              "generated", fix)
        lines.append(f"{where}: rated a constructed answer")
    return lines


def run(recipe: Recipe, stage: Stage, produced: set[str] | None = None) -> list[str]:
    """Every check of what the run will run later (after the trust gate); raises ZephyrError on the first that
    fails."""
    return import_modules(recipe) + check_templates(recipe, produced) + check_judges(recipe, stage, produced)
