"""Small programs the tests plug into recipes as generators, and where the browser test finds Chromium."""

import os
import shutil

from zephyr_recipes.embedded import tasks


def sloppy(messages):
    """Answers with the task's typical mistake."""
    instruction = messages[-1]["content"]
    answer = tasks.solve(instruction)
    words = answer.split()
    return " ".join(words[:-1]) if len(words) > 1 else str(int(answer) + 1) if answer.isdigit() else "?"


def browser_paths() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) from PATH or the usual places; CHROMIUM and CHROMEDRIVER name others."""
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or \
        next((p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if os.path.exists(p)), None)
    return browser, driver


def install_distribution(site, package: str, modules: dict[str, str], entry_points: str, version: str = "0.1"):
    """Write a throwaway distribution into ``site`` as an installer would: the package ``package`` with ``modules``
    (file name -> source) and its dist-info (METADATA, ``entry_points`` as entry_points.txt, an empty RECORD).
    Put ``site`` on the path (PYTHONPATH of a subprocess) and the package is installed, without pip or a download."""
    import textwrap
    from pathlib import Path

    pkg = Path(site) / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, source in modules.items():
        (pkg / name).write_text(source)
    info = Path(site) / f"{package}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (info / "RECORD").write_text("")
