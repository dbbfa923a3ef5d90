"""A pipeline recipe read: an ordered list of stage recipes whose outputs feed the next, run by one command
(:mod:`.pipeline` runs it).

A pipeline recipe has a single top-level key, ``pipeline``::

    pipeline:
      output_dir: runs/tiny-zephyr          # every stage's run folder sits under it, named after the stage
      seed: 42                              # run.seed of every stage
      stages:
        - {name: sft, recipe: tiny/sft}
        - name: dpo
          recipe: tiny/dpo
          overrides: {model.name_or_path: "${pipeline.output_dir}/sft"}

Finished stages are skipped on a re-run when their config and the code they run by reference are the same and no
stage they read ran again (:mod:`.reuse` says how); ``--from STAGE``
runs that stage and every later one again, ``--only STAGE`` runs just that one.

Rounds repeat a block of stages, each round starting from the model the previous round trained (iterative,
on-policy DPO)::

    rounds:
      count: 3
      policy: ${pipeline.output_dir}/sft    # the policy of round 1
      next_policy: dpo                      # the block stage whose output is the next round's policy
      prompts: {stage: aif, per_round: 200, mode: fresh}   # fresh: a new seeded slice each round; same: one slice
      stages:
        - {name: aif, recipe: tiny/aif, overrides: {stage.generators.0.model: "{policy}"}}
        - {name: dpo, recipe: tiny/dpo, overrides: {model.name_or_path: "{policy}", dataset.path: "{aif}"}}

The block's stages run as ``aif-r1, dpo-r1, aif-r2 ...`` after the pipeline's own stages. In their overrides
``{policy}`` is the round's starting policy, ``{round}`` its number and ``{NAME}`` the folder of block stage NAME
in the same round. ``pipeline.reuse`` names other pipeline folders whose finished stages of the same config
(up to the pipeline folder's path) are copied instead of run again.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..core import yamlsafe
from ..core.errors import ZephyrError, unknown_key
from .compose import compose, find_recipe, read_recipe_text

PIPELINE_KEYS = {"description", "output_dir", "seed", "stages", "report", "rounds", "reuse"}



STAGE_KEYS = {"name", "recipe", "overrides"}



ROUND_KEYS = {"count", "policy", "next_policy", "prompts", "stages"}



PROMPT_KEYS = {"stage", "per_round", "mode"}



def is_pipeline(raw: dict) -> bool:
    return isinstance(raw, dict) and "pipeline" in raw



def load(recipe: str, overrides: list[str]) -> tuple[dict, str, Path] | None:
    """Compose a pipeline recipe; None when the recipe is a single stage.

    ``STAGE.key=value`` overrides go to that stage (``sft.stage.trainer.learning_rate=1e-4``); the others
    (``pipeline.seed=3``) go to the pipeline file itself.
    """
    try:
        path = find_recipe(recipe)[0]
        raw = yamlsafe.load(read_recipe_text(path), path)  # bounded: size, depth, aliases, duplicate keys
    except yaml.YAMLError:
        return None  # not a pipeline we can read; composing it reports the YAML error
    if not is_pipeline(raw):
        return None
    body = raw["pipeline"] if isinstance(raw["pipeline"], dict) else {}
    names = {st.get("name") for st in body.get("stages") or [] if isinstance(st, dict)}
    rounds = body["rounds"] if isinstance(body.get("rounds"), dict) else {}
    block = {st.get("name") for st in rounds.get("stages") or [] if isinstance(st, dict)}
    own: list[str] = []
    per_stage: dict[str, dict] = {}
    for o in overrides:
        head, _, rest = o.partition(".")
        if (head in names or head in block or _round_name(head, block)) and "=" in rest:
            key, _, value = rest.partition("=")
            per_stage.setdefault(head, {})[key] = Verbatim(value)
        elif re.match(r"hardware[.=]", o.lstrip("+")):  # a profile for every stage that can take it
            key, _, value = o.partition("=")
            per_stage.setdefault(EVERY, {})[key] = Verbatim(value)
        else:
            own.append(o)
    raw, name, path = compose(recipe, own)
    spec = check(raw, per_stage)
    return spec, name, path



EVERY = "*"  # per_stage key of the hardware overrides given for every stage (see stage_config)



def _round_name(name: str, block) -> str | None:
    """The block stage a round's stage name belongs to (dpo-r2 -> dpo), or None."""
    m = re.fullmatch(r"(.+)-r(\d+)", str(name))
    return m.group(1) if m and m.group(1) in block else None



def _fill(value, tokens: dict):
    """Replace {policy}, {round} and {NAME} in the strings of an override value."""
    if isinstance(value, str):
        text = re.sub(r"\{([\w.-]+)\}", lambda m: str(tokens.get(m.group(1), m.group(0))), value)
        return Verbatim(text) if isinstance(value, Verbatim) else text
    if isinstance(value, list):
        return [_fill(v, tokens) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, tokens) for k, v in value.items()}
    return value



def _check_stage_list(stages, where: str) -> None:
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or not st.get("name") or not st.get("recipe"):
            raise ZephyrError(f"{where}[{i}] needs a name and a recipe", "write {name: sft, recipe: tiny/sft}")
        bad = set(st) - STAGE_KEYS
        if bad:
            raise unknown_key(f"{where}[{i}]", sorted(bad)[0], sorted(STAGE_KEYS))
        if not isinstance(st.get("overrides") or {}, dict):
            raise ZephyrError(f"{where}[{i}].overrides must be a mapping of key: value",
                              "write overrides as `key: value` lines")



def expand_rounds(rounds, output_dir: str, per_stage: dict) -> list[dict]:
    """The stages of every round, named NAME-rN, with their placeholders filled in."""
    if not isinstance(rounds, dict):
        raise ZephyrError("`pipeline.rounds` must be a mapping", "give it count, policy, next_policy and stages")
    unknown = set(rounds) - ROUND_KEYS
    if unknown:
        raise unknown_key("pipeline.rounds", sorted(unknown)[0], sorted(ROUND_KEYS))
    count = rounds.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ZephyrError(f"`pipeline.rounds.count` is {count!r} but must be a whole number of at least 1",
                          "for example pipeline.rounds.count=3")
    block = rounds.get("stages")
    if not isinstance(block, list) or not block:
        raise ZephyrError("`pipeline.rounds.stages` must be a non-empty list", "list the stages each round repeats")
    _check_stage_list(block, "pipeline.rounds.stages")
    names = [st["name"] for st in block]
    if len(set(names)) < len(names):
        raise ZephyrError("two stages of pipeline.rounds.stages have the same name", "give every stage its own name")
    if not rounds.get("policy"):
        raise ZephyrError("`pipeline.rounds.policy` must be set", "the model round 1 starts from, e.g. "
                          "${pipeline.output_dir}/sft")
    nxt = rounds.get("next_policy")
    if nxt not in names:
        raise ZephyrError(f"`pipeline.rounds.next_policy` is {nxt!r}, not a stage of the round",
                          f"name the stage whose output the next round starts from: one of {', '.join(names)}")
    prompts = rounds.get("prompts")
    if prompts is not None:
        if not isinstance(prompts, dict) or set(prompts) - PROMPT_KEYS:
            raise ZephyrError("`pipeline.rounds.prompts` takes stage, per_round and mode",
                              "write prompts: {stage: aif, per_round: 200, mode: fresh}")
        if prompts.get("stage") not in names:
            raise ZephyrError(f"`pipeline.rounds.prompts.stage` is {prompts.get('stage')!r}, not a stage of the round",
                              f"name the AI feedback stage: one of {', '.join(names)}")
        per = prompts.get("per_round")
        if isinstance(per, bool) or not isinstance(per, int) or per < 1:
            raise ZephyrError(f"`pipeline.rounds.prompts.per_round` is {per!r} but must be at least 1",
                              "the number of prompts each round's AI feedback answers")
        if prompts.get("mode", "fresh") not in ("fresh", "same"):
            raise ZephyrError(f"`pipeline.rounds.prompts.mode` is {prompts.get('mode')!r}",
                              "fresh (a new seeded slice of the prompts each round) or same (one slice every round)")
    out, base = [], Path(output_dir)
    for r in range(1, count + 1):
        policy = str(rounds["policy"]) if r == 1 else str(base / f"{nxt}-r{r - 1}")
        tokens = {"policy": policy, "round": r, **{n: str(base / f"{n}-r{r}") for n in names}}
        for st in block:
            name = f"{st['name']}-r{r}"
            overrides = {**(st.get("overrides") or {})}
            if prompts and st["name"] == prompts["stage"]:
                per = prompts["per_round"]
                overrides["dataset.max_train_samples"] = per
                overrides["stage.prompt_offset"] = (r - 1) * per if prompts.get("mode", "fresh") == "fresh" else 0
            overrides.update(per_stage.get(st["name"], {}))
            overrides.update(per_stage.get(name, {}))
            entry = {"name": name, "recipe": st["recipe"], "overrides": _fill(overrides, tokens),
                     "round": r, "block": st["name"]}
            if per_stage.get(EVERY):
                entry["every"] = dict(per_stage[EVERY])
            out.append(entry)
    return out



def check(raw: dict, per_stage: dict | None = None) -> dict:
    extra = set(raw) - {"pipeline"}
    if extra:
        raise ZephyrError(f"a pipeline recipe has only the `pipeline` key, this one also has `{sorted(extra)[0]}`",
                          "move stage settings into the stages' overrides")
    spec = raw["pipeline"]
    if not isinstance(spec, dict):
        raise ZephyrError("`pipeline` must be a mapping", "give it output_dir, seed and stages")
    unknown = set(spec) - PIPELINE_KEYS
    if unknown:
        raise unknown_key("pipeline", sorted(unknown)[0], sorted(PIPELINE_KEYS))
    if not spec.get("output_dir"):
        raise ZephyrError("`pipeline.output_dir` must be set", "for example pipeline.output_dir=runs/my-pipeline")
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ZephyrError("`pipeline.stages` must be a non-empty list", "list stages as {name, recipe, overrides}")
    per_stage = per_stage or {}
    _check_stage_list(stages, "pipeline.stages")
    common = per_stage.get(EVERY, {})
    stages = [{**st, "overrides": {**(st.get("overrides") or {}), **per_stage.get(st["name"], {})},
               **({"every": dict(common)} if common else {})} for st in stages]
    if spec.get("rounds") is not None:
        stages += expand_rounds(spec["rounds"], str(spec["output_dir"]), per_stage)
    names = []
    for st in stages:
        if st["name"] in names:
            raise ZephyrError(f"two pipeline stages are named {st['name']!r}", "give every stage its own name")
        names.append(st["name"])
    reuse = spec.get("reuse") or []
    if isinstance(reuse, str):
        reuse = [reuse]
    if not isinstance(reuse, list) or not all(isinstance(r, str) for r in reuse):
        raise ZephyrError("`pipeline.reuse` must be a list of pipeline folders", "e.g. pipeline.reuse=[runs/tiny-zephyr]")
    report = spec.get("report")
    if report is not None:
        if not isinstance(report, dict) or set(report) - {"claims"}:
            raise ZephyrError("`pipeline.report` takes one key, claims", "write report: {claims: [...]}, or drop it")
        from ..reports.ablation import check_claims  # lazy: start-up (numpy, every benchmark: pipelines with a report)

        check_claims(report.get("claims"))
    out = {"description": spec.get("description", ""), "output_dir": str(spec["output_dir"]),
           "seed": int(spec.get("seed", 42)), "stages": stages}
    if report is not None:
        out["report"] = report
    if spec.get("rounds") is not None:
        r = spec["rounds"]
        out["rounds"] = {"count": r["count"], "policy": str(r["policy"]), "next_policy": r["next_policy"],
                         "stages": [st["name"] for st in r["stages"]]}
        if r.get("prompts"):
            out["rounds"]["prompts"] = {"mode": "fresh", **r["prompts"]}
    if reuse:
        out["reuse"] = [str(x) for x in reuse]
    return out



class Verbatim(str):
    """A value typed on the command line: Hydra's override syntax already, passed on as written."""



class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, also writing command-line values as the strings they are (yaml's own stays untouched)."""



_Dumper.add_representer(Verbatim, lambda dumper, value: dumper.represent_str(str(value)))



def dump(obj) -> str:
    """A pipeline spec (or anything holding one) as YAML."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False)



def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"  # Hydra's quoted string



def _hydra(value, nested: bool = False) -> str:
    """A YAML value written in Hydra's override grammar (lists as [a, b], mappings as {key: value})."""
    if isinstance(value, Verbatim):
        return str(value)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_hydra(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_hydra(v, True)}" for k, v in value.items()) + "}"
    text = str(value)
    if nested or re.search(r"[\s()\[\]{},='\"\\]", text):
        return _quote(text)
    return text



def override(key: str, value) -> str:
    return f"{key}={_hydra(value)}"
