"""Pipelines: an ordered list of stage recipes whose outputs feed the next, run by one command.

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
stage they read ran again (commands/reuse.py says how); ``--from STAGE``
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

import json
import logging
import os
import re
import time
from pathlib import Path

import yaml

from .. import stages
from ..core import runfolder, trust, yamlsafe
from ..core.errors import ZephyrError, unknown_key
from . import launch, preflight, reuse, runcheck
from .compose import compose, find_recipe, read_recipe_text
from .validate import validate

log = logging.getLogger("zephyr_recipes")
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
    rounds = body.get("rounds") if isinstance(body.get("rounds"), dict) else {}
    block = {st.get("name") for st in rounds.get("stages") or [] if isinstance(st, dict)}
    own, per_stage = [], {}
    for o in overrides:
        head, _, rest = o.partition(".")
        if (head in names or head in block or _round_name(head, block)) and "=" in rest:
            key, _, value = rest.partition("=")
            per_stage.setdefault(head, {})[key] = _Verbatim(value)
        elif re.match(r"hardware[.=]", o.lstrip("+")):  # a profile for every stage that can take it
            key, _, value = o.partition("=")
            per_stage.setdefault(EVERY, {})[key] = _Verbatim(value)
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
        return _Verbatim(text) if isinstance(value, _Verbatim) else text
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


class _Verbatim(str):
    """A value typed on the command line: Hydra's override syntax already, passed on as written."""


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, also writing command-line values as the strings they are (yaml's own stays untouched)."""


_Dumper.add_representer(_Verbatim, lambda dumper, value: dumper.represent_str(str(value)))


def dump(obj) -> str:
    """A pipeline spec (or anything holding one) as YAML."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"  # Hydra's quoted string


def _hydra(value, nested: bool = False) -> str:
    """A YAML value written in Hydra's override grammar (lists as [a, b], mappings as {key: value})."""
    if isinstance(value, _Verbatim):
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


def _override(key: str, value) -> str:
    return f"{key}={_hydra(value)}"


def relocate(value, output_dir: str, folders: dict):
    """Point references to ``<output_dir>/<stage>`` at the stage's actual folder where ``folders`` moves it."""
    if isinstance(value, str):
        text = value
        for name, folder in folders.items():
            here = str(Path(output_dir) / name)
            text = re.sub(re.escape(here) + r"(?=/|$)", lambda _m, f=str(folder): f, text)
        return _Verbatim(text) if isinstance(value, _Verbatim) else text
    if isinstance(value, list):
        return [relocate(v, output_dir, folders) for v in value]
    if isinstance(value, dict):
        return {k: relocate(v, output_dir, folders) for k, v in value.items()}
    return value


def stage_folder(spec: dict, name: str, folders: dict | None = None) -> Path:
    return Path((folders or {}).get(name) or Path(spec["output_dir"]) / name)


def stage_config(spec: dict, st: dict, base: Path, folders: dict | None = None,
                 deep: bool = True) -> tuple[str, dict]:
    """(recipe name, validated config) of one pipeline stage (``deep``: see :func:`validate.validate`)."""

    folders = folders or {}
    recipe = st["recipe"]
    local = (base / recipe)
    if recipe.endswith((".yaml", ".yml")) and local.is_file():
        recipe = str(local)
    given = relocate(st.get("overrides") or {}, spec["output_dir"], folders)
    # Replacing finished runs is the command line's to ask (STAGE.run.overwrite=true there, or --from), never the
    # pipeline file's.
    given = {k: v for k, v in given.items() if k != "run.overwrite" or isinstance(v, _Verbatim)}
    # The pipeline's seed, unless the stage pins its own (run.seed in its overrides).
    overrides = [f"run.seed={spec['seed']}"] + [_override(k, v) for k, v in given.items()]
    folder = stage_folder(spec, st["name"], folders)
    # A stage moved out of the pipeline folder (a sweep's shared stage) is named after where it went.
    run_name = f"{folder.parent.parent.name}-{folder.name}" if st["name"] in folders else \
        f"{Path(spec['output_dir']).name}-{st['name']}"
    overrides += [_override("run.output_dir", str(folder)), _override("run.name", run_name)]
    try:
        if st.get("every"):  # hardware for every stage: those that run in one process keep their own profile
            raw, _, _ = compose(recipe, overrides)
            if not stages.get((raw.get("stage") or {}).get("name", "sft")).one_process:
                overrides = [_override(k, v) for k, v in st["every"].items()] + overrides
        raw, name, _ = compose(recipe, overrides)
        cfg = validate(raw, name, deep=deep)
    except ZephyrError as exc:
        raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
    return name, cfg


def stage_configs(spec: dict, base: Path, folders: dict | None = None,
                  deep: bool = True) -> list[tuple[dict, str, dict]]:
    """(stage entry, recipe name, validated config) for every stage, composed before anything runs.

    ``folders`` moves stages out of the pipeline folder (a sweep's shared stages); references to them follow.
    """
    return [(st, *stage_config(spec, st, base, folders, deep)) for st in spec["stages"]]


def check_references(spec: dict, planned: list) -> None:
    """Every value pointing into the pipeline folder names a stage that runs before the one reading it, checked
    before the first stage runs (a typo would otherwise be found only after the stages before it trained)."""
    out = os.path.normpath(str(spec["output_dir"]))
    names = [st["name"] for st, _, _ in planned]

    def strings(value, where):
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for k, v in value.items():
                if where != "" or k != "run":  # a stage's own folder and name
                    yield from strings(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from strings(v, f"{where}[{i}]")

    for i, (st, _, cfg) in enumerate(planned):
        for where, text in strings(cfg, ""):
            norm = os.path.normpath(text) if "/" in text else ""
            if not norm.startswith(out + os.sep):
                continue
            ref = norm[len(out) + 1:].split(os.sep)[0]
            if ref in names[:i]:
                continue
            later = ref in names
            raise ZephyrError(
                f"pipeline stage {st['name']!r}: {where}={text} reads stage {ref!r}, "
                + ("which runs after it" if later else "which the pipeline does not have"),
                (f"move {ref} before {st['name']}" if later else
                 f"name one of the stages before it: {', '.join(names[:i]) or '(none)'}") + "; nothing was run")


def _strip_place(cfg: dict, output_dir: str, folders: dict | None = None) -> dict:
    """cfg with its own folder and name removed and the pipeline folder's path replaced by a marker."""
    moved = {str(Path(f)): f"<pipeline>/{name}" for name, f in (folders or {}).items()}

    def walk(v):
        if isinstance(v, str):
            for here, marker in moved.items():
                v = re.sub(re.escape(here) + r"(?=/|$)", marker, v)
            return re.sub(re.escape(str(Path(output_dir))) + r"(?=/|$)", "<pipeline>", v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v
    out = walk(cfg)
    out["run"] = {k: v for k, v in out["run"].items() if k not in ("output_dir", "name")}
    return out


def _reuse(spec: dict, stage: str, cfg: dict, folder: Path, folders: dict | None = None) -> Path | None:
    """Copy a finished stage of the same config (up to the pipeline folder's path) from a pipeline.reuse folder."""
    import shutil

    mine = _strip_place(cfg, spec["output_dir"], folders)
    names = {st["name"] for st in spec["stages"]}
    uses = sorted({m for m in re.findall(r"<pipeline>/([^/'\"\s,\]}]+)", json.dumps(mine, default=str)) if m in names})
    for other in spec.get("reuse") or []:
        src = Path(other) / stage
        if not runfolder.is_complete(src) or Path(other).resolve() == Path(spec["output_dir"]).resolve():
            continue
        frozen = yaml.safe_load((src / runfolder.CONFIG).read_text())
        if runfolder.config_diff(_strip_place(frozen, other), mine):
            continue
        # The same config reading other stages' folders is the same run only if those stages are the other
        # pipeline's own, copied from it: a dpo of another beta makes its evaluation another run.
        if any((runfolder.read_status(stage_folder(spec, n, folders)) or {}).get("reused_from") != str(Path(other) / n)
               for n in uses):
            continue
        if folder.exists() and any(folder.iterdir()):
            runfolder.remove_run_folder(folder)  # refuses anything but a run folder
        elif folder.exists():
            folder.rmdir()
        tmp = folder.with_name(f".{folder.name}.copy")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoint-*"), symlinks=True)
        runfolder.write_atomic(tmp / runfolder.CONFIG, yaml.safe_dump(cfg, sort_keys=False))
        runfolder.set_status(tmp, "complete", reused_from=str(src))
        tmp.rename(folder)  # run.json says complete only once everything is in place
        return src
    return None


def _will_skip(cfg: dict, folders: list[Path]) -> bool:
    """Whether a stage is finished with this config and code, so that the pipeline skips it unless a stage it reads
    runs again (its pre-flight of modules, tokenizers and judges then waits until it has to run)."""
    folder = Path(cfg["run"]["output_dir"])
    if not runfolder.is_complete(folder):
        return False
    try:
        return reuse.why_again(cfg, stages.get(cfg["stage"]["name"]), [], folders) is None
    except ZephyrError:
        return False


def run(spec: dict, recipe_file: Path, from_stage: str | None = None, only: str | None = None,
        argv: list[str] | None = None, folders: dict | None = None, transform=None) -> Path:
    """Run the stages in order (``transform(stage entry, recipe, config) -> config``, when given, replaces each
    stage's config before anything runs: a rehearsal's stand-ins)."""
    names = [st["name"] for st in spec["stages"]]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            hint = ""
            if spec.get("rounds") and value in spec["rounds"]["stages"]:
                hint = f"; a round's stages are named {value}-r1 ... {value}-r{spec['rounds']['count']}"
            raise ZephyrError(f"{flag} {value}: the pipeline has no stage of that name{hint}",
                              f"its stages: {', '.join(names)}")
    planned = stage_configs(spec, recipe_file.parent, folders)
    check_references(spec, planned)
    if transform is not None:
        planned = [(st, name, validate(transform(st, name, cfg), name)) for st, name, cfg in planned]
    trust.check({st["name"]: cfg for st, _, cfg in planned})  # before any stage runs

    produced: set[str] = set()
    checked: set[str] = set()  # stages whose modules, tokenizers and judges were checked here
    folders_all = [Path(c["run"]["output_dir"]) for _, _, c in planned]
    for st, _, cfg in planned:  # keys, endpoints, paths and disk of every stage, before the first runs
        try:
            preflight.run(cfg, stages.get(cfg["stage"]["name"]), network=True, produced=produced)
            if not (from_stage or only) and _will_skip(cfg, folders_all):
                pass  # finished with this config and code: checked again only if it has to run after all
            else:
                runcheck.run(cfg, stages.get(cfg["stage"]["name"]), produced)  # modules, tokenizers, judges
                checked.add(st["name"])
        except ZephyrError as exc:
            raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
        produced.add(str(Path(cfg["run"]["output_dir"])))
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    written = {**spec, "stages": [{**st, "folder": str(Path(cfg["run"]["output_dir"]))} for st, _, cfg in planned]}
    runfolder.write_atomic(out / "pipeline.yaml", dump({"pipeline": written}))
    status_path = out / "pipeline.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {"stages": {}}
    status["seed"] = spec["seed"]
    forced = set(names[names.index(from_stage):]) if from_stage else ({only} if only else set())
    ran: list[Path] = []  # folders of the stages that ran in this invocation: a stage reading one runs again
    for st, name, cfg in planned:
        stage, folder = st["name"], Path(cfg["run"]["output_dir"])
        if only and stage != only:
            continue
        again = stage in forced
        if stage not in forced and runfolder.is_complete(folder):
            why = reuse.why_again(cfg, stages.get(cfg["stage"]["name"]), ran,
                                  [Path(c["run"]["output_dir"]) for _, _, c in planned])
            if why is None:
                log.info("pipeline: %s finished already (%s), skipped", stage, folder)
                continue
            log.info("pipeline: %s runs again: %s", stage, why)
            again = True
        if stage not in forced and spec.get("reuse"):
            src = _reuse(spec, stage, cfg, folder, folders)
            if src is not None:
                log.info("pipeline: %s is the finished %s (same config), copied", stage, src)
                status["stages"][stage] = {"folder": str(folder), "reused_from": str(src), "finished": runfolder.now()}
                runfolder.write_atomic(status_path, json.dumps(status, indent=2) + "\n")
                continue
        if from_stage and stage not in forced and not runfolder.is_complete(folder):
            raise ZephyrError(f"stage {stage!r} comes before --from {from_stage} and has not finished",
                              "run the whole pipeline (without --from) first")
        if again and not stages.get(cfg["stage"]["name"]).revisable:
            cfg["run"]["overwrite"] = True  # a revisable stage (AI feedback) keeps its folder and redoes what changed
        log.info("pipeline: running %s (%s) -> %s", stage, name, folder)
        started = time.time()
        if cfg["hardware"].get("launcher") == "slurm":
            raise ZephyrError(f"pipeline stage {stage!r} uses a Slurm profile; a pipeline waits for each stage",
                              "run the pipeline itself inside a Slurm allocation with an accelerate profile, "
                              "or launch the stage recipes one by one")
        launch.execute(cfg, name, argv or [], produced, again=again, code_checked=stage in checked)
        ran.append(folder)
        status["stages"][stage] = {"folder": str(folder), "seconds": round(time.time() - started, 2),
                                   "finished": runfolder.now()}
        runfolder.write_atomic(status_path, json.dumps(status, indent=2) + "\n")
    if "report" in spec and not only:
        from ..reports import ablation  # lazy: start-up (numpy and every benchmark, for pipelines with a report)

        try:
            ablation.report([out], out / "report")
            log.info("pipeline: report written to %s", out / "report" / "report.md")
        except ZephyrError as exc:  # the stages finished; a report that cannot be made does not undo them
            log.warning("pipeline: no report: %s (%s)", exc.problem, exc.fix)
    return out
