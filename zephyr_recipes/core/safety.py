"""What a recipe file may not do by itself: read the environment, carry credentials, or reach outside the working
directory and replace runs. The threat model is docs/security.md; code a recipe can run is :mod:`trust`'s.

- ``${oc.env:...}`` anywhere in a recipe or an override is refused: a resolved value would be frozen into the run
  folder's ``config.yaml``, its card and its provenance, and sent wherever the recipe says. Secrets are named by
  the variable that holds them (``api_key_env: OPENAI_API_KEY``, read at call time, sent to that spec's host only).
- Credentials in a URL (``https://user:key@host``, ``?api_key=...``) are refused for the same reason.
- Publishing is honoured only from the command line: a trainer's ``push_to_hub`` / ``hub_model_id`` (an upload with
  the user's hub token), ``trackio_space_id`` (curves sent to a hub Space) and a ``report_to`` that names a tracker
  other than the local ones (``none``, ``trackio``, ``tensorboard``).
- ``run.overwrite`` is honoured only from the command line, and a run folder outside the working directory (and
  outside the folder the recipe file lies in) only when the command line names it (``run.output_dir=...``,
  ``pipeline.output_dir=...``).
"""

from __future__ import annotations

import os
import re
import sys
from urllib.parse import parse_qsl, urlsplit

from .errors import ZephyrError

ENV_INTERPOLATION = re.compile(r"\$\{\s*(?:oc\.env|env)\s*:\s*([^,}\s]*)")
SECRET_PARAM = re.compile(r"key|token|secret|password|passwd|auth|signature|sig$|credential", re.I)


def env_interpolations(obj, path: str = "") -> list[tuple[str, str]]:
    """(dotted path, variable) of every environment interpolation in an unresolved config."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += env_interpolations(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += env_interpolations(v, f"{path}[{i}]")
    elif isinstance(obj, str):
        found += [(path, m.group(1)) for m in ENV_INTERPOLATION.finditer(obj)]
    return found


def refuse_env(unresolved: dict) -> None:
    found = env_interpolations(unresolved)
    if found:
        where, var = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ZephyrError(f"`{where}` reads the environment variable {var or '?'} through ${{oc.env:...}}{more}; a "
                          "recipe may not read the environment: the value would be written into the run folder "
                          "(config.yaml, the card, provenance) and sent wherever the recipe says",
                          "secrets go in the environment and are named by a declared secret field, e.g. "
                          f"api_key_env: {var or 'OPENAI_API_KEY'} on an openai generator or judge (read at call "
                          "time, sent to its base_url's host only); any other value: write it out, in the recipe or "
                          "as an override")


def url_credentials(url: str) -> str | None:
    """What in a URL is a credential (user:password@, a key in the query), or None."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return None
    if parts.username or parts.password:
        return "a user name or password before the host"
    for key, _value in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_PARAM.search(key):
            return f"the query parameter {key}"
    return None


def refuse_url_credentials(where: str, url: str) -> None:
    what = url_credentials(url)
    if what:
        raise ZephyrError(f"`{where}` holds a credential ({what}); it would be written into the run folder "
                          "(config.yaml, run.json, ratings, the lock file) and printed",
                          f"remove it from the URL and name the environment variable holding the key: "
                          f"{where.rsplit('.', 1)[0]}.api_key_env=NAME (sent as a Bearer token to that host only)")


def host_of(url: str | None) -> str:
    try:
        return urlsplit(str(url)).hostname or "?"
    except ValueError:
        return "?"


def secret_routes(cfg, where: str = "") -> list[str]:
    """Lines for `validate`: which environment variable is sent to which host, by which spec."""
    out = []
    if isinstance(cfg, dict):
        if isinstance(cfg.get("api_key_env"), str) and cfg["api_key_env"]:
            host = host_of(cfg.get("base_url")) if cfg.get("base_url") else "127.0.0.1 (its serve: command)"
            out.append(f"secret: ${cfg['api_key_env']} is sent to {host} ({where})")
        for k, v in cfg.items():
            out += secret_routes(v, f"{where}.{k}" if where else str(k))
    elif isinstance(cfg, list):
        for i, v in enumerate(cfg):
            out += secret_routes(v, f"{where}[{i}]")
    return out


# ------------------------------------------------------------------------------------------- destruction
_KEY = re.compile(r"^[+~]*([A-Za-z_][\w.\-]*)=")


def command_line_keys(overrides) -> set[str]:
    """The dotted keys the command line sets."""
    return {m.group(1) for o in overrides if (m := _KEY.match(str(o)))}


def inside_cwd(path: str) -> bool:
    """Whether ``path`` lies in the working directory, lexically (a symlinked runs/ stays inside)."""
    full = os.path.normpath(os.path.join(os.getcwd(), os.path.expanduser(str(path))))
    cwd = os.path.normpath(os.getcwd())
    return full == cwd or full.startswith(cwd.rstrip(os.sep) + os.sep)


def _own_folder(path: str, recipe_file) -> bool:
    """At or below the folder the recipe file lies in (a frozen config.yaml re-run as a recipe names the run folder
    it lies in; a pipeline file writes beside itself)."""
    if recipe_file is None:
        return False
    full = os.path.normpath(os.path.join(os.getcwd(), os.path.expanduser(str(path))))
    own = os.path.normpath(os.path.dirname(os.path.abspath(str(recipe_file))))
    return full == own or full.startswith(own.rstrip(os.sep) + os.sep)


def guard_destructive(cfg: dict, overrides, recipe_name: str, recipe_file=None) -> None:
    """A recipe's own run.overwrite is ignored, and its run folder must lie in the working directory (or be the
    folder a frozen config.yaml lies in) unless the command line names it. Changes ``cfg`` in place.

    ``cfg`` is the composed mapping before validation (a single stage's or a pipeline's), not a checked recipe:
    validation reads the run.overwrite this sets."""
    given = command_line_keys(overrides)
    if "pipeline" in cfg and isinstance(cfg["pipeline"], dict):
        out = cfg["pipeline"].get("output_dir")
        if isinstance(out, str) and not inside_cwd(out) and "pipeline.output_dir" not in given and \
                not _own_folder(out, recipe_file):
            raise ZephyrError(f"pipeline.output_dir={out} from the recipe file lies outside the working directory "
                              f"({os.getcwd()}) and the recipe's own folder; a recipe may only write below those",
                              f"give it on your own command line if you mean it: pipeline.output_dir={out}")
        return
    guard_publishing(cfg, given)
    run = cfg.get("run")
    if not isinstance(run, dict):
        return
    if run.get("overwrite") is True and "run.overwrite" not in given:
        run["overwrite"] = False
        print("note: run.overwrite=true in the recipe file is ignored: only your own command line can replace a "
              "finished run (add run.overwrite=true to it)", file=sys.stderr)
    out, name = run.get("output_dir"), run.get("name")
    where, value = ("run.output_dir", out) if out else ("run.name", f"runs/{name}") if name else (None, None)
    if where and isinstance(value, str) and not inside_cwd(value) and where not in given and \
            not _own_folder(value, recipe_file):
        raise ZephyrError(f"{where}={out or name} from the recipe file puts the run folder outside the working "
                          f"directory ({os.getcwd()}) and the recipe's own folder; a recipe may only write below those",
                          f"give the folder on your own command line if you mean it: run.output_dir={value}")


LOCAL_TRACKERS = ("none", "trackio", "tensorboard")


def publishing(trainer: dict) -> list[tuple[str, object, str]]:
    """(key, value, where it sends) of each trainer setting that sends something off the machine."""
    found: list[tuple[str, object, str]] = []
    if trainer.get("push_to_hub") is True:
        found.append(("push_to_hub", True, "uploads the model with your hub token"))
    if trainer.get("hub_model_id"):
        found.append(("hub_model_id", trainer["hub_model_id"], "names the hub repository the model is uploaded to"))
    if trainer.get("trackio_space_id"):
        found.append(("trackio_space_id", trainer["trackio_space_id"], "sends the training curves to a hub Space"))
    report_to = trainer.get("report_to")
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    remote = [str(n) for n in names if str(n) not in LOCAL_TRACKERS]
    if remote:
        found.append(("report_to", report_to, f"logs to {', '.join(remote)}, which may send the run off the machine"))
    return found


def guard_publishing(cfg: dict, given: set[str]) -> None:
    """Settings that send the model or its curves off the machine must come from the user's own command line."""
    stage = cfg.get("stage")
    trainer = stage.get("trainer") if isinstance(stage, dict) else None
    if not isinstance(trainer, dict):
        return
    for key, value, what in publishing(trainer):
        if f"stage.trainer.{key}" in given:
            continue
        value = _yaml(value)
        raise ZephyrError(f"stage.trainer.{key}={value} from the recipe file {what}; a recipe may not publish "
                          "anything by itself",
                          f"give it on your own command line if you mean it: stage.trainer.{key}={value} (or "
                          f"remove it from the recipe)")


def _yaml(value) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return str(value)
