"""validate remembers its slow checks (chat template on real rows, token parity) while nothing they read changed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REMEMBERED = "remembered:"


def _validate(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`zephyr-recipes validate` in a fresh process; its last stderr line says whether transformers was imported."""
    env = {**os.environ, "ZEPHYR_RECIPES_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    probe = ("import sys; from zephyr_recipes.commands.cli import main; rc = main(sys.argv[1:]); "
             "print('transformers imported:', 'transformers' in sys.modules, file=sys.stderr); raise SystemExit(rc)")
    return subprocess.run([sys.executable, "-c", probe, "validate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _checks(out: str) -> list[str]:
    """The lines of the checks: everything but the remembered-note and a library's own log lines on stdout (DeepSpeed
    says which accelerator it found, on stdout, the first time TRL's fields are described)."""
    return [line for line in out.splitlines() if not line.startswith((REMEMBERED, "[20"))]


@pytest.mark.slow  # validates in fresh processes; make test's budget on a slower 2-core machine (make test-slow)
def test_a_second_validate_of_the_same_recipe_and_files_reprints_the_checks_without_loading_them(tmp_path):
    home = tmp_path / "home"
    first = _validate(home, tmp_path, "tiny/sft", "--no-preflight")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "transformers imported: True" in first.stderr and REMEMBERED not in first.stdout
    assert "chat template:" in first.stdout and "token parity" in first.stdout.lower()
    second = _validate(home, tmp_path, "tiny/sft", "--no-preflight")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "transformers imported: False" in second.stderr  # neither tokenizer nor data were loaded
    assert REMEMBERED in second.stdout and "--recheck" in second.stdout
    assert "[zephyr] data:" in first.stderr and "[zephyr] data:" in second.stderr  # its log lines come back too
    assert _checks(second.stdout) == _checks(first.stdout)


def test_an_override_or_an_edited_data_file_is_checked_again(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("ZEPHYR_RECIPES_HOME", str(tmp_path / "home"))  # a memory of this test's own
    data = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": str(2 * i)}]} for i in range(40)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["validate", "tiny/sft", f"dataset.path={data}", "dataset.train_split=train", "dataset.test_split=null",
            "--no-preflight"]

    def validate(*extra):
        code, out, err = cli(*args, *extra)
        assert code == 0, out + err
        return out

    checked = validate()
    assert REMEMBERED not in checked
    assert REMEMBERED in validate()
    # --recheck runs the checks again and prints what they print, not the memory
    again = validate("--recheck")
    assert REMEMBERED not in again and _checks(again) == _checks(checked)
    # another value of any key is another check
    assert REMEMBERED not in validate("dataset.max_train_samples=8")
    # the same config over an edited file is another check: the file is read again
    data.write_text(data.read_text().replace("What is 0 plus 0?", "What is zero plus zero?"))
    assert REMEMBERED not in validate()
    assert REMEMBERED in validate()


@pytest.mark.parametrize("value", ["HuggingFaceH4/ultrachat_200k", "someone/model-on-the-hub"])
def test_nothing_on_the_hub_is_remembered(value, cli):
    from zephyr_recipes.runtime import checkmemo
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    def key(*overrides):
        cfg = validate(compose("tiny/sft", list(overrides))[0], "tiny/sft", deep=False)
        return checkmemo.key(cfg)

    assert key() is not None and key() == key()
    assert key("stage.trainer.learning_rate=1e-4") not in (None, key())
    for override in (f"dataset.path={value}", f"model.name_or_path={value}", f"model.tokenizer_name_or_path={value}"):
        assert key(override) is None, f"{override} must not be remembered"
