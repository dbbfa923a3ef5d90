"""The token-parity check's probes, its report and its comparisons of token ids (:mod:`.parity` runs them on
every place a recipe turns a conversation into tokens)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import ZephyrError

PROBES: tuple[tuple[str, list[dict]], ...] = (
    ("the probe with a system prompt", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Name the three primary colours."},
        {"role": "assistant", "content": "Red, yellow and blue."}]),
    ("the one-turn probe", [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."}]),
)



WRONG = {"role": "assistant", "content": "Green."}



FIX_TEMPLATE = ("give both places the same chat template: model.chat_template (or a generator's "
                "model_config.chat_template) names one of the shipped templates or a .jinja file; null keeps the "
                "model's own")



@dataclass
class Mismatch:
    places: tuple[str, str]
    probe: str
    problem: str
    fix: str

    def text(self) -> str:
        return f"{self.places[0]} <> {self.places[1]} ({self.probe}): {self.problem}"



@dataclass
class Report:
    compared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.compared:
            out.append(f"token parity: {len(set(self.compared))} comparison(s) agree on {len(PROBES)} probe "
                       f"conversations: {'; '.join(dict.fromkeys(self.compared))}")
        if self.skipped:
            out.append(f"token parity: not checked: {'; '.join(dict.fromkeys(self.skipped))}")
        out += [f"token parity: MISMATCH {m.text()}" for m in self.mismatches]
        return out

    def refuse(self) -> None:
        if not self.mismatches:
            return
        m = self.mismatches[0]
        more = f" (and {len(self.mismatches) - 1} more mismatch(es))" if len(self.mismatches) > 1 else ""
        raise ZephyrError(f"token parity: {m.text()}{more}", m.fix)

    def pairs(self) -> set[tuple[str, str]]:
        return {m.places for m in self.mismatches}



def _tok(tokenizer, i: Optional[int]) -> str:
    return "(end)" if i is None else f"{tokenizer.convert_ids_to_tokens(int(i))!r} (id {i})"



def _first_diff(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)



def _at(ids: list[int], i: int) -> Optional[int]:
    return ids[i] if i < len(ids) else None



def opens_answer(report: Report, trained: list[int], start: int, prompt: list[int], places: tuple[str, str],
                 probe: str, tokenizer, fix: str = FIX_TEMPLATE) -> bool:
    """``prompt`` (places[1]) must be exactly the tokens ``trained`` (places[0]) has before the answer, which starts
    at token ``start`` (where the probe and the same probe with another answer part)."""
    i = _first_diff(trained[:start], prompt)
    if i == start == len(prompt):
        report.compared.append(f"{places[1]} prompts with exactly the tokens {places[0]} has before the answer")
        return True
    if i == len(prompt) < start:
        problem = (f"the prompt stops at token {i}, and training continues with "
                   f"{tokenizer.decode(trained[i:start])!r} before the answer: the model is asked to write what the "
                   "template should have given it")
    else:
        where = "the answer" if i >= start else f"{tokenizer.decode(prompt[max(0, i - 6):i])!r}"
        problem = (f"token {i} differs: {_tok(tokenizer, _at(trained, i) if i < start else None)} before the answer "
                   f"in training, {_tok(tokenizer, _at(prompt, i))} in the prompt, after {where}")
    report.mismatches.append(Mismatch(places, probe, problem, fix))
    return False



def equal(report: Report, a: list[int], b: list[int], places: tuple[str, str], probe: str, tokenizer,
          fix: str = FIX_TEMPLATE, what: str = "the same conversation") -> bool:
    i = _first_diff(a, b)
    if i == len(a) == len(b):
        report.compared.append(f"{places[0]} = {places[1]} on {what}")
        return True
    report.mismatches.append(Mismatch(places, probe, f"{what}: token {i} differs: {_tok(tokenizer, _at(a, i))} "
                                                     f"against {_tok(tokenizer, _at(b, i))}", fix))
    return False



def one_bos(report: Report, ids: list[int], place: str, probe: str, tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None or ids[:2] != [bos, bos]:
        return True
    report.mismatches.append(Mismatch(
        (place, "the tokenizer's BOS"), probe, f"the sequence starts with two BOS tokens ({_tok(tokenizer, bos)})",
        "the template writes the BOS and the place's encoding adds another: encode the rendered template without "
        "special tokens (add_special_tokens=False), or drop {{ bos_token }} from the template"))
    return False



def stop_ids(tokenizer, model: Optional[str]) -> set[int]:
    """The tokens generation stops at: the model's generation_config.json (else config.json) EOS ids, else the
    tokenizer's EOS."""
    ids: list = []
    if model:
        folder = Path(model)
        for name in ("generation_config.json", "config.json"):
            f = folder / name
            if folder.is_dir() and f.is_file():
                got = json.loads(f.read_text()).get("eos_token_id")
                if got is not None:
                    ids = got if isinstance(got, list) else [got]
                    break
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    return {int(i) for i in ids}



def _eos_override(tokenizer, answer: list[tuple[int, str]]) -> str:
    """The override that makes the answer's closing special token (the template's end of turn) the EOS, quoted for
    Hydra and the shell; a placeholder when the answer ends on no special token."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    last = next((t for t, _ in reversed(answer) if t in special), None)
    if last is None:
        return "stage.trainer.eos_token='<the template's end-of-turn token>'"
    return f"\"stage.trainer.eos_token='{tokenizer.convert_ids_to_tokens(last)}'\""


def answer_ends(report: Report, pairs: list[tuple[int, str]], start: int, stops: set[int], place: str,
                probe: str, tokenizer, assistant_only: bool) -> Optional[list[int]]:
    """The trained answer (tokens from ``start``) up to and including the first stop token; a mismatch when it
    never stops, or (assistant_only_loss) when its stop token is not trained."""
    from ..data.preview import TRAINED  # lazy: start-up (only the places the recipe has)

    answer = pairs[start:]
    at = next((k for k, (t, _) in enumerate(answer) if t in stops), None)
    if at is None:
        report.mismatches.append(Mismatch(
            (place, "generation's stop tokens"), probe,
            f"the trained answer {tokenizer.decode([t for t, _ in answer])!r} never reaches a token generation stops "
            f"at ({', '.join(_tok(tokenizer, s) for s in sorted(stops))}): the model does not learn to stop",
            "use a template that closes each assistant turn with the EOS (or a token the model's "
            "generation_config.json lists as eos_token_id), or make the turn's end token the EOS when training: "
            f"{_eos_override(tokenizer, answer)} (TRL's SFT writes it into the saved tokenizer and "
            "generation_config)"))
        return None
    if assistant_only and answer[at][1] != TRAINED:
        report.mismatches.append(Mismatch(
            (place, "generation's stop tokens"), probe,
            f"the stop token {_tok(tokenizer, answer[at][0])} that ends the answer is not trained "
            "(outside the template's {% generation %} markers)",
            "put the end-of-turn token inside {% generation %} ... {% endgeneration %}"))
    report.compared.append(f"{place}: the answer ends on a stop token ({_tok(tokenizer, answer[at][0])})")
    return [t for t, _ in answer[:at + 1]]
