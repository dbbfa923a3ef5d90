"""One registry type for every seam: stages, benchmarks, row kinds, and the judge types of installed packages.

A :class:`Registry` maps a name to an object from three places, in this order:

1. objects added with :meth:`Registry.add` (the row kinds register their instances this way);
2. this package's built-in modules, named by module path (``{"sft": "zephyr_recipes.stages.sft"}``) and imported the
   first time their name is asked for, so a run imports only the modules it uses;
3. installed packages, through an entry-point group (``zephyr_recipes.stages``, ``zephyr_recipes.benchmarks``,
   ``zephyr_recipes.row_kinds``, ``zephyr_recipes.judges``: feedback/judge_registry.py). A package adds a stage by
   declaring, in its own ``pyproject.toml``::

       [project.entry-points."zephyr_recipes.stages"]
       letters = "my_package.letters"          # a module whose STAGE is the stage, or
       # letters = "my_package.letters:STAGE"  # the object itself

   Entry points are read only when a name is not built in, or when every name is listed, and loaded only when
   their name is asked for. An installed package's entry points are trusted as the user's own install (see
   docs/security.md): a recipe can name a plugin's stage but cannot install one, so a distribution found in the
   working directory (which ``python -m`` puts on the path: a recipe's folder) is skipped with a warning. A plugin
   never replaces a built-in name; it is skipped with a warning too.

Every object carries its name (``.name``); the registry checks that it matches the name it is registered under.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from .errors import ZephyrError, did_you_mean

T = TypeVar("T")
log = logging.getLogger("zephyr_recipes")

GROUPS = ("zephyr_recipes.stages", "zephyr_recipes.benchmarks", "zephyr_recipes.row_kinds", "zephyr_recipes.judges")


class Registry(Generic[T]):
    """Name -> object, built-in modules loaded lazily, plugins through the entry-point group ``group``.

    ``what`` names one object in messages ("stage"); ``attr`` is the attribute a registered module defines
    ("STAGE"); ``modules`` is the built-in table, read live (adding a line to it registers a name);
    ``unknown(name, names)`` gives the (problem, fix) of a name that is not registered.
    """

    def __init__(self, what: str, group: str, attr: str, modules: Optional[dict[str, str]] = None,
                 kind: Optional[type] = None, unknown: Optional[Callable[[Any, list[str]], tuple[str, str]]] = None):
        self.what, self.group, self.attr = what, group, attr
        self.modules: dict[str, str] = modules if modules is not None else {}
        self.kind = kind
        self._unknown = unknown
        self._added: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._plugins: Optional[dict[str, metadata.EntryPoint]] = None

    # ------------------------------------------------------------------------------------------- adding
    def add(self, name: str, obj: T) -> T:
        """Register an object under ``name`` (new, or the same object again); returns it."""
        known = self._added.get(name)
        if (known is not None and known is not obj) or name in self.modules:
            raise ZephyrError(f"{self.what} {name!r} is registered twice", f"give the new {self.what} its own name")
        self._check(name, obj, f"the {self.what} added as {name!r}")
        self._added[name] = obj
        return obj

    # ------------------------------------------------------------------------------------------- names
    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of installed packages in this registry's group (read once), less built-in names."""
        if self._plugins is None:
            found: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=self.group):
                if _in_working_directory(ep):  # `python -m` puts it on the path: a recipe's folder, not an install
                    log.warning("the %s %r of %s in the working directory is ignored: a plugin is a package you "
                                "install (pip install), not a folder beside a recipe", self.what, ep.name, _dist(ep))
                    continue
                if ep.name in self.modules or ep.name in self._added:
                    log.warning("the %s %r of package %s is ignored: a built-in %s has that name", self.what,
                                ep.name, _dist(ep), self.what)
                    continue
                found.setdefault(ep.name, ep)
            self._plugins = found
        return self._plugins

    def names(self) -> list[str]:
        """Every registered name: added, built in (in table order), then plugins (sorted)."""
        builtin = list(self._added) + [n for n in self.modules if n not in self._added]
        return builtin + sorted(n for n in self.plugins() if n not in builtin)

    def builtin(self, name: str) -> bool:
        return name in self._added or name in self.modules

    def origin(self, name: str) -> str:
        """Where a name comes from: "built in", or the package that provides it."""
        if self.builtin(name):
            return "built in"
        ep = self.plugins().get(name)
        return f"package {_dist(ep)}" if ep is not None else "unknown"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self.builtin(name) or name in self.plugins())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    # ------------------------------------------------------------------------------------------- objects
    def get(self, name: Any) -> T:
        """The object called ``name`` (its module imported on first use), or an error listing the names."""
        if isinstance(name, str) and name in self._added:
            return self._added[name]
        if isinstance(name, str) and name in self._loaded:
            return self._loaded[name]
        if isinstance(name, str) and name in self.modules:
            where = self.modules[name]
            obj = getattr(importlib.import_module(where), self.attr)
        elif isinstance(name, str) and name in self.plugins():
            ep = self.plugins()[name]
            where = f"{ep.value} (package {_dist(ep)})"
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin: say which package, not a traceback
                raise ZephyrError(f"the {self.what} {name!r} of package {_dist(ep)} does not load: "
                                  f"{type(exc).__name__}: {exc}",
                                  f"fix or uninstall that package (pip uninstall {_dist(ep)})") from None
            obj = getattr(loaded, self.attr, None) if isinstance(loaded, ModuleType) else loaded
            if obj is None:
                raise ZephyrError(f"{ep.value} (package {_dist(ep)}) defines no {self.attr}",
                                  f"point the entry point at the {self.what} object, e.g. "
                                  f"{ep.value.split(':')[0]}:{self.attr}")
        else:
            problem, fix = (self._unknown(name, self.names()) if self._unknown else
                            (f"{name!r} is not a {self.what}",
                             did_you_mean(str(name), self.names()) or f"use one of: {', '.join(self.names())}"))
            raise ZephyrError(problem, fix)
        self._check(name, obj, where)
        self._loaded[name] = obj
        return obj

    __getitem__ = get

    def values(self) -> list[T]:
        """Every object, in :meth:`names` order (imports every module and plugin)."""
        return [self.get(n) for n in self.names()]

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]

    def loaded(self) -> list[str]:
        """The names whose object is already in memory."""
        return list(self._added) + list(self._loaded)

    def forget(self) -> None:
        """Drop loaded objects and the entry-point scan (a module reloaded, a package installed)."""
        self._loaded.clear()
        self._plugins = None

    def _check(self, name: str, obj: Any, where: str) -> None:
        if self.kind is not None and not isinstance(obj, self.kind):
            raise ZephyrError(f"{where} is a {type(obj).__name__}, not a {self.kind.__name__}",
                              f"make its {self.attr} an instance of a {self.kind.__name__} subclass")
        if getattr(obj, "name", name) != name:
            raise ZephyrError(f"{where} defines {self.what} {obj.name!r}, registered as {name!r}",
                              f"make the registry line (or entry point) and the {self.what}'s name agree")


def _in_working_directory(ep: metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    try:
        return dist is not None and Path(str(dist.locate_file(""))).resolve() == Path.cwd().resolve()
    except (OSError, TypeError, ValueError):
        return False


def _dist(ep: Optional[metadata.EntryPoint]) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "?"
