"""The token-parity check: one probe conversation through every place a recipe turns a conversation into tokens,
compared where the ids must agree. Tokenizers only, no weights; ``validate`` and ``rehearse`` run it.

The places, each through the function that place itself calls:

- **trained tokens** of a training stage: the stage's row kind tokenizes the probe as its TRL trainer does
  (:meth:`zephyr_recipes.data.kinds.RowKind.tokenize`: SFT's conversation, DPO's prompt, chosen and rejected, KTO's
  prompt and completion), with the tokenizer and template the run trains with (:func:`modeling.load_tokenizer`);
- **chat** with the run folder (:func:`runtime.chat.chat_tokenizer` and :func:`runtime.chat.prompt_ids`);
- **generation** from a model, by the AI-feedback generators and the evaluated model: ``type: transformers``
  (:func:`model.prompting.generator_tokenizer`, :func:`~model.prompting.prompt_texts`, the backend's encoding),
  ``type: vllm`` (the served model's template, or the one its ``--chat-template`` argument names:
  :func:`feedback.vllm.chat_template_arg`); an endpoint renders with its server's template, which nothing here can
  see (listed as not checked);
- the **on-policy round trip**: the tokens a generator produces for the probe's answer (what its model was trained
  to continue with, up to where generation stops), decoded as the backend decodes them
  (:func:`~model.prompting.answer_text`), and tokenized again as dDPO tokenizes a chosen answer.

What must agree: every generation prompt is a prefix of the trained tokens of the same conversation (the model is
asked to continue exactly where training continued), at most one BOS starts a sequence, the trained answer ends on a
token generation stops at, DPO's masked prompt is the whole generation prompt, a run that continues a chat model
(dDPO, KTO, or any stage on a run folder of this project) trains in that model's own format, and the round trip
gives back the generated tokens. A mismatch names the two places, the first differing token and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Optional

from ..core.errors import ZephyrError
from ..core.recipe import Recipe, section_of
from ..core.schema import ModelConfig, TrainerStageConfig
from ..model import prompting
from .paritycompare import (
    PROBES,
    WRONG,
    Mismatch,
    Report,
    _at,
    _first_diff,
    _tok,
    answer_ends,
    equal,
    one_bos,
    opens_answer,
    stop_ids,
)


# ------------------------------------------------------------------------------------------- tokenizers
class Tokenizers:
    """Tokenizers by model, opened once (no weights). ``produced`` maps a run folder a pipeline's earlier stage
    writes to the tokenizer it will save there (the template it trains with)."""

    def __init__(self, produced: Optional[dict] = None):
        self.produced = dict(produced or {})
        self.cache: dict[str, Any] = {}

    def raw(self, model: str, model_cfg: Optional[ModelConfig] = None):
        """The model's tokenizer as saved (a copy); ``model_cfg``: the model section it is opened with (its
        revision, its tokenizer's source), or None for the defaults."""
        import copy

        from ..model import modeling  # lazy: start-up (only the places the recipe has)

        if key(model) in self.produced:
            return copy.deepcopy(self.produced[key(model)])
        if model not in self.cache:
            base = model_cfg if model_cfg is not None else section_of(ModelConfig, None)
            self.cache[model] = modeling.open_tokenizer(dataclasses.replace(base, name_or_path=model,
                                                                            chat_template=None))
        return copy.deepcopy(self.cache[model])

    def own(self, model: str, model_cfg: Optional[ModelConfig] = None):
        """The model's tokenizer with its own saved template and a pad token (None when it has no template)."""
        from ..model import chat_format  # lazy: start-up (only the places the recipe has)

        tok = self.raw(model, model_cfg)
        if not tok.chat_template:
            return None
        chat_format.ensure_pad_token(tok)
        return tok


def key(model: str) -> str:
    """A model name as the produced-folders map keys it: local paths resolved, hub ids as they are."""
    text = str(model)
    return str(Path(text).expanduser().resolve()) if text.startswith((".", "/", "~")) or Path(text).exists() else text


def _source(model: str) -> Optional[str]:
    from ..model import modeling  # lazy: start-up (only the places the recipe has)

    try:
        return modeling.resolve_source(model, "model")
    except ZephyrError:
        return None


def is_run_folder(model: str, produced: dict) -> bool:
    from ..core import runfolder  # lazy: start-up (only the places the recipe has)

    src = _source(model)
    return key(model) in produced or bool(src and (Path(src) / runfolder.CONFIG).is_file())


def _ids(enc) -> list[int]:
    ids = enc["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


# ------------------------------------------------------------------------------------------- the places
def _rows(kind_name: str, probe: list[dict]) -> Optional[dict]:
    if kind_name == "chat":
        return {"messages": probe}
    if kind_name == "pairs":
        return {"prompt": probe[:-1], "chosen": [probe[-1]], "rejected": [WRONG]}
    if kind_name == "unpaired":
        return {"prompt": probe[:-1], "completion": [probe[-1]], "label": True}
    return None


def _renders(tokenizer, messages) -> bool:
    try:
        tokenizer.apply_chat_template(messages, tokenize=False)
        return True
    except Exception:  # a template that refuses a conversation (no system role ...): the probe is skipped
        return False


def check_training(report: Report, recipe: Recipe[TrainerStageConfig], kind, tokenizers: Tokenizers) -> Any:
    """The trained tokens of a training stage against chat and generation from the run folder it writes, DPO's
    prompt, and the model's own format; returns the tokenizer the run will save (for later stages)."""
    from ..model import modeling  # lazy: start-up (only the places the recipe has)
    from . import chat  # lazy: start-up (only the places the recipe has)

    stage, trainer = recipe.stage.name, recipe.stage.trainer
    assistant_only = bool(trainer.get("assistant_only_loss"))
    model = str(recipe.model.name_or_path)
    base = tokenizers.raw(model) if key(model) in tokenizers.produced else modeling.open_tokenizer(recipe.model)
    tok = modeling.prepare_tokenizer(base, recipe.model, assistant_only)
    stops = stop_ids(tok, _source(model))
    if trainer.get("eos_token"):  # TRL's SFT makes it the EOS of the saved tokenizer and of generation_config
        eos = tok.convert_tokens_to_ids(str(trainer["eos_token"]))
        if isinstance(eos, int) and eos != tok.unk_token_id:
            stops.add(eos)
            if tok.eos_token != trainer["eos_token"]:  # the tokenizer the run saves, as later stages read it
                tok = copy.deepcopy(tok)
                tok.eos_token = str(trainer["eos_token"])
    trained_place = f"{stage} trained tokens"
    own = None
    continues = kind.name != "chat" or is_run_folder(model, tokenizers.produced)
    if continues:
        try:
            own = tokenizers.own(model, recipe.model)
        except ZephyrError as exc:
            report.skipped.append(f"{model}'s own format ({exc.problem})")
    for probe_name, probe in PROBES:
        if not _renders(tok, probe):
            report.skipped.append(f"{probe_name}: the training template refuses it")
            continue
        row = _rows(kind.name, probe)
        if row is None:
            report.skipped.append(f"{stage}: rows of kind {kind.name} are not tokenized by this check")
            return tok
        seqs = kind.tokenize(tok, row, {**trainer, "max_length": None})
        pairs = next(iter(seqs.values()))
        trained = [t for t, _ in pairs]
        other = kind.tokenize(tok, _rows(kind.name, probe[:-1] + [WRONG]), {**trainer, "max_length": None})
        start = _first_diff(trained, [t for t, _ in next(iter(other.values()))])
        one_bos(report, trained, trained_place, probe_name, tok)
        # chat with the run folder, and generation from it (AI feedback, evaluation): the template it saves
        chat_ids = chat.prompt_ids(tok, probe[:-1])
        gen_ids = _generator_prompt(tok, probe[:-1])
        one_bos(report, chat_ids, "chat", probe_name, tok)
        one_bos(report, gen_ids, "generation from the run folder", probe_name, tok)
        fix = ("use a template whose generation prompt (add_generation_prompt) is exactly the text that opens an "
               "assistant turn in training")
        ok = opens_answer(report, trained, start, chat_ids, (trained_place, "chat"), probe_name, tok, fix)
        ok = opens_answer(report, trained, start, gen_ids, (trained_place, "generation from the run folder "
                                                                           "(AI feedback, evaluation)"),
                          probe_name, tok, fix) and ok
        if ok:
            answer_ends(report, pairs, start, stops, trained_place, probe_name, tok, assistant_only)
        if kind.name in ("pairs", "unpaired"):
            from ..data.preview import MASKED  # lazy: start-up (only the places the recipe has)

            masked = sum(1 for _, s in pairs if s == MASKED)
            if masked < len(gen_ids):
                report.mismatches.append(Mismatch(
                    (f"{stage} prompt", "its generation prompt"), probe_name,
                    f"the prompt {stage} masks ends at token {masked} and the generation prompt at {len(gen_ids)}: "
                    f"{tok.decode(gen_ids[masked:])!r} is left out of training (TRL's common-prefix split)",
                    "use a template that renders the prompt alone as the start of prompt + answer"))
            else:
                report.compared.append(f"{stage} prompt = its generation prompt")
            if "rejected" in seqs:
                rejected = [t for t, _ in seqs["rejected"]]
                equal(report, trained[:len(gen_ids)], rejected[:len(gen_ids)], (f"{stage} chosen", f"{stage} rejected"),
                      probe_name, tok, what="the shared prompt")
        if own is not None and _renders(own, probe):
            reference = [t for t, _ in kind.tokenize(own, row, {**trainer, "max_length": None}).get(
                next(iter(seqs)))]
            equal(report, reference, trained, (f"{model}'s own template (what it was trained with)", trained_place),
                  probe_name, tok, what="the same conversation")
    return tok


def _generation_places(recipe: Recipe, tokenizers: Tokenizers) -> list[tuple]:
    """(place, model, tokenizer the place renders with or an error text, note) of each generator and the evaluated
    model. The generator specs are read as the mappings they were checked as (``dataclasses.asdict`` of the typed
    specs: what the backends take)."""
    out: list[tuple] = []
    evaluates = hasattr(recipe.stage, "benchmarks")  # the eval stage's section
    specs: list[tuple[str, dict]] = []
    if hasattr(recipe.stage, "generators"):  # the AI-feedback stage's section
        for i, gen in enumerate(recipe.stage.generators or []):
            specs.append((f"aif generator {gen.name or f'generator{i}'}", dataclasses.asdict(gen)))
    if evaluates:
        from .. import benchmarks  # lazy: start-up (only the places the recipe has)
        from ..stages import eval as eval_stage  # lazy: start-up (only the places the recipe has)

        if eval_stage.needs_model(recipe):
            name, vllm = recipe.model.name_or_path, recipe.stage.vllm
            spec = {**vllm, "type": "vllm", "model": name} if vllm is not None \
                else {"type": "transformers", "model": name, "model_config": dataclasses.asdict(recipe.model)}
            shared = [b for b in recipe.stage.benchmarks if not benchmarks.get(b).own_model]  # the generator answers
            specs.append((f"eval answers ({', '.join(shared)})", spec))
    for place, spec in specs:
        kind, model = spec.get("type"), str(spec.get("model") or "")
        place = f"{place} ({kind})"
        try:
            if kind == "transformers":
                mcfg = spec.get("model_config") or {}
                if key(model) in tokenizers.produced and not mcfg.get("chat_template"):
                    tok = tokenizers.own(model)
                else:
                    tok, _, _ = prompting.generator_tokenizer(model, mcfg, recipe.hardware)
                out.append((place, model, tok, None, _generator_prompt))
            elif kind == "vllm":
                from ..feedback import vllm  # lazy: start-up (only the places the recipe has)

                arg = vllm.chat_template_arg(spec)
                tok = tokenizers.own(model)
                if arg is not None:
                    tok = tok or tokenizers.raw(model)
                    tok.chat_template = Path(arg).read_text() if Path(arg).is_file() else arg
                out.append((place, model, tok, None if tok is not None else "the served model has no template",
                            _generator_prompt))
            else:
                out.append((place, model, None, "an endpoint renders with its server's own template, which is not "
                                               "visible here" if kind == "openai" else "a function answers: no tokens",
                            _generator_prompt))
        except ZephyrError as exc:
            out.append((place, model, None, exc.problem, _generator_prompt))
    if evaluates:  # chat with the evaluated model
        from . import chat  # lazy: start-up (only the places the recipe has)

        model = str(recipe.model.name_or_path)
        try:
            tok = tokenizers.own(model) if key(model) in tokenizers.produced else chat.chat_tokenizer(model)[1]
            out.append(("chat", model, tok, None, chat.prompt_ids))
        except ZephyrError as exc:
            out.append(("chat", model, None, exc.problem, chat.prompt_ids))
    return out


def _generator_prompt(tokenizer, messages: list[dict]) -> list[int]:
    return _ids(tokenizer(prompting.prompt_texts(tokenizer, [messages]), **prompting.ENCODE))


def check_generation(report: Report, recipe: Recipe, tokenizers: Tokenizers) -> None:
    """Each generator's and the evaluated model's prompt tokens against the trained tokens of the model they
    prompt (its own format), and the on-policy round trip of its answer."""
    from ..data import kinds  # lazy: start-up (only the places the recipe has)

    for place, model, tok, note, render in _generation_places(recipe, tokenizers):
        if tok is None:
            report.skipped.append(f"{place}: {note}")
            continue
        try:
            own = tokenizers.own(model)
        except ZephyrError as exc:
            report.skipped.append(f"{place}: {exc.problem}")
            continue
        if own is None:
            report.skipped.append(f"{place}: {model} has no template of its own to compare with")
            continue
        ref_place = f"{model}'s training template"
        stops = stop_ids(own, _source(model))
        for probe_name, probe in PROBES:
            if not _renders(own, probe):
                continue
            ref = kinds.CHAT.tokenize(own, {"messages": probe}, {})[""]
            trained = [t for t, _ in ref]
            start = _first_diff(trained, [t for t, _ in kinds.CHAT.tokenize(own, {"messages": probe[:-1] + [WRONG]},
                                                                              {})[""]])
            prompt = render(tok, probe[:-1])
            one_bos(report, prompt, place, probe_name, tok)
            if not opens_answer(report, trained, start, prompt, (ref_place, place), probe_name, tok):
                continue
            produced = answer_ends(report, ref, start, stops, ref_place, probe_name, own, False)
            if produced is None:
                continue
            if place.startswith("aif generator"):  # answers dDPO trains on
                round_trip(report, place, probe_name, probe, produced, tok, own)


def round_trip(report: Report, place: str, probe_name: str, probe: list[dict], produced: list[int], gen_tok,
               policy_tok) -> int:
    """The generated answer tokens, decoded as the backend decodes them and tokenized again as dDPO tokenizes a
    chosen answer; returns how many token positions differ (recorded as a mismatch when any do)."""
    from ..data import kinds  # lazy: start-up (only the places the recipe has)
    from ..data.preview import TRAINED  # lazy: start-up (only the places the recipe has)
    text = prompting.answer_text(gen_tok, produced)
    row = {"prompt": probe[:-1], "chosen": [{"role": "assistant", "content": text}], "rejected": [WRONG]}
    trained = [t for t, s in kinds.PAIRS.tokenize(policy_tok, row, {})["chosen"] if s == TRAINED]
    n = max(len(produced), len(trained))
    differ = sum(1 for i in range(n) if _at(produced, i) != _at(trained, i))
    if differ:
        i = _first_diff(produced, trained)
        report.mismatches.append(Mismatch(
            (place, "dpo on its answers (on-policy round trip)"), probe_name,
            f"{differ} of {n} answer token positions differ: the generator produced {len(produced)} tokens, dDPO "
            f"trains on {len(trained)} for their decoded text {text!r}; first at token {i}: "
            f"{_tok(policy_tok, _at(produced, i))} generated, {_tok(policy_tok, _at(trained, i))} trained",
            "keep the answer's special tokens when decoding, or use a template whose assistant turn renders the "
            "decoded text back to the same tokens"))
    else:
        report.compared.append(f"{place}: its answer tokens = what dDPO trains on for their text")
    return differ


# ------------------------------------------------------------------------------------------- entry points
def check(recipe: Recipe, stage, produced: Optional[dict] = None) -> tuple[Report, Any]:
    """The parity report of one stage's recipe; ``produced``: run folder -> the tokenizer an earlier pipeline stage
    saves there. Returns (report, the tokenizer this stage saves, or None)."""
    report, tokenizers = Report(), Tokenizers(produced)
    saved = None
    if recipe.model.trust_remote_code:
        report.skipped.append("model.trust_remote_code: validate runs no code of the model's own")
        return report, None
    kind = getattr(stage, "rows", None)
    if kind is not None and isinstance(recipe.stage, TrainerStageConfig):
        from ..data import kinds  # lazy: start-up (only the places the recipe has)

        try:
            saved = check_training(report, recipe, kinds.get(kind), tokenizers)
        except ZephyrError as exc:
            report.skipped.append(f"{recipe.stage.name} trained tokens ({exc.problem})")
    check_generation(report, recipe, tokenizers)
    return report, saved


def run_check(recipe: Recipe, stage, produced: Optional[dict] = None, where: str = "") -> list[str]:
    """The check's lines for one stage (``validate``, ``rehearse``); a ZephyrError on the first mismatch. A stage
    that trains adds the tokenizer it saves to ``produced`` under its output folder, for the stages after it."""
    report, saved = check(recipe, stage, produced)
    if where:
        for m in report.mismatches:
            m.probe = f"{where}, {m.probe}"
    report.refuse()
    if saved is not None and produced is not None:
        produced[key(str(recipe.run.output_dir))] = saved
    return report.lines()
