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
