"""Pre-flight: what a run needs from outside its process is checked before any model loads or any answer is
generated (validate, and again at run start); validate says ok only after every check; commands recorded in cards
stay runnable; short runs say what they are."""

from __future__ import annotations

import json

import pytest

from tests.eval_helpers import ChatEndpoint


@pytest.fixture
def endpoint():
    server = ChatEndpoint(lambda body, headers: "Answer: 42")
    yield server
    server.close()


def _aif_with_api_generator(url: str, key_env: str) -> list[str]:
    return ["dataset.max_train_samples=4", "stage.generators=[{name: api, type: openai, base_url: '" + url
            + "', model: gen, api_key_env: " + key_env + "}]"]


def test_a_missing_api_key_stops_ai_feedback_before_any_answer(cli, endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("ZR_PREFLIGHT_KEY", raising=False)
    out = tmp_path / "aif"
    code, _, err = cli("validate", "tiny/aif", *_aif_with_api_generator(endpoint.url, "ZR_PREFLIGHT_KEY"))
    assert code == 2 and "ZR_PREFLIGHT_KEY is not set" in err and "export ZR_PREFLIGHT_KEY" in err
    code, _, err = cli("tiny/aif", *_aif_with_api_generator(endpoint.url, "ZR_PREFLIGHT_KEY"), f"run.output_dir={out}")
    assert code == 2 and "ZR_PREFLIGHT_KEY is not set" in err and "nothing was generated" in err
    assert not out.exists() and endpoint.requests == []  # no folder, and not one request sent


def test_validate_asks_the_endpoint_and_names_the_host_the_key_goes_to(cli, endpoint, monkeypatch):
    monkeypatch.setenv("ZR_PREFLIGHT_KEY", "sk-not-a-real-key-but-long-enough")
    code, out, err = cli("validate", "tiny/aif", *_aif_with_api_generator(endpoint.url, "ZR_PREFLIGHT_KEY"))
    assert code == 0, err
    host = endpoint.url.rsplit("/v1", 1)[0]
    assert f"key ZR_PREFLIGHT_KEY is set, sent only to {host}" in out and f"{host} answers /models" in out
    assert "sk-not-a-real-key" not in out + err
    assert out.splitlines()[-1].startswith("ok: tiny/aif")


def test_an_endpoint_that_does_not_answer_is_refused_before_generation(cli, tmp_path):
    dead = _aif_with_api_generator("http://127.0.0.1:9/v1", "HOME")  # the discard port: nothing listens
    out = tmp_path / "aif"
    code, stdout, err = cli("tiny/aif", *dead, f"run.output_dir={out}")
    assert code == 2 and "does not answer" in err and "/v1/models" in err and not out.exists()
    code, stdout, err = cli("validate", "tiny/aif", *dead)
    assert code == 2 and "ok:" not in stdout
    code, stdout, err = cli("validate", "tiny/aif", *dead, "--no-preflight")
    assert code == 0 and "not checked (--no-preflight)" in stdout


def test_a_missing_local_model_is_refused_at_run_start_and_named_at_validate(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("tiny/sft", "model.name_or_path=./my-model")
    assert code == 2 and "model folder ./my-model does not exist" in err and not (tmp_path / "runs").exists()
    code, out, err = cli("validate", "tiny/dpo")  # a shipped chain whose first runs have not run here yet
    assert code == 0 and "./runs/tiny-sft does not exist yet: it is the run folder of tiny/sft" in out


def test_the_disk_must_hold_the_weights_and_checkpoints(monkeypatch):
    from zephyr_recipes.core.errors import ZephyrError
    from zephyr_recipes.runtime import preflight
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    cfg = validate(*compose("zephyr-7b-beta/sft", ["stage.trainer.save_strategy=steps"])[:2])
    kept = cfg.stage.trainer.get("save_total_limit") or 2
    need = preflight.saved_bytes(cfg, int(7.24e9))
    assert need == pytest.approx(7.24e9 * 2 + kept * 7.24e9 * 10, rel=1e-6)  # bf16 weights + checkpoints with AdamW
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: type("U", (), {"free": int(need) - 1})())
    with pytest.raises(ZephyrError, match="GB free") as exc:
        preflight.check_disk(cfg, int(7.24e9))
    assert "save_total_limit" in exc.value.fix


def test_validate_says_ok_only_after_the_split_check(cli, tiny_aif_run, tiny_sft_run):
    code, out, err = cli("validate", "tiny/dpo", f"dataset.path={tiny_aif_run}", f"model.name_or_path={tiny_sft_run}",
                         "dataset.train_split=train")
    assert code == 2 and "ok:" not in out
    assert "train" in err and "train_prefs" in err  # names the split asked for and the ones the folder has
    code, out, _ = cli("validate", "tiny/dpo", f"dataset.path={tiny_aif_run}", f"model.name_or_path={tiny_sft_run}")
    assert code == 0 and out.splitlines()[-1].startswith("ok: tiny/dpo")


def test_the_cards_reproduce_command_keeps_numbers_and_masks_secrets(tiny_sft_run):
    from zephyr_recipes.core.records import redact

    card = (tiny_sft_run / "README.md").read_text()
    assert "dataset.max_train_samples=1280" in card and "num_train_epochs=1" in card
    line = redact("zephyr-recipes run tiny/eval stage.mt_bench.max_new_tokens=24 stage.trainer.hub_token=hf_"
                  + "a" * 30 + " model.pad_token=<pad> stage.judge.base_url=https://user:pw@host/v1")
    assert "max_new_tokens=24" in line and "pad_token=<pad>" in line
    assert "hf_aaaa" not in line and "hub_token=***" in line and "https://***@host" in line and "pw@" not in line


def test_a_short_run_whose_warmup_eats_its_steps_says_so(cli, tmp_path):
    out = tmp_path / "short"
    code, _, err = cli("tiny/sft", "stage.trainer.max_steps=2", "stage.trainer.warmup_steps=1",
                       "dataset.max_train_samples=64", f"run.output_dir={out}")
    assert code == 0, err
    assert "short run: 2 optimizer step(s) with 1 warmup step(s): step 1 runs at learning rate 0" in err
    prov = json.loads((out / "provenance.json").read_text())
    assert "short run" in prov["short_run"]
