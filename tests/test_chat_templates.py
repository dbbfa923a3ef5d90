"""Training chat templates: the shipped ones render exactly what the published ones do, mark exactly the answers,
and the runner picks TRL's patch, a shipped twin, or refuses, from the tokenizer alone."""

from __future__ import annotations

import pytest

from tests.byo_helpers import build_tokenizer, published
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.data import kinds
from zephyr_recipes.model import chat_format

# (shipped template, published template file, special tokens, bos, eos)
FAMILIES = {
    "chatml": ("chatml-hermes", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
    "smollm2": ("smollm2-instruct", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_start|>", "<|im_end|>"),
    "llama-3": ("meta-llama-3-instruct", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                          "<|eot_id|>"], "<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.2": ("llama-3.2-instruct", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                         "<|eot_id|>"], "<|begin_of_text|>", "<|eot_id|>"),
    "mistral-instruct": ("mistral-7b-instruct-v0.2", ["<unk>", "<s>", "</s>"], "<s>", "</s>"),
    "gemma": ("gemma-it", ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>"),
}

CONVERSATIONS = [
    ([{"role": "user", "content": "Reverse: a b c"}, {"role": "assistant", "content": "c b a"}], False),
    ([{"role": "user", "content": " Sort: 3 1 2 "}, {"role": "assistant", "content": " 1 2 3\n"},
      {"role": "user", "content": "Now count them."}, {"role": "assistant", "content": "Three."}], False),
    ([{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Colour of the sky?"},
      {"role": "assistant", "content": "Blue."}], False),
    ([{"role": "user", "content": "Hello there"}], True),
    ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}], True),
    ([{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three"}],
     True),
    ([{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "Odd."}], False),
]

_TOKENIZERS: dict = {}


def family_tokenizer(family: str, template: str | None = None):
    _, special, bos, eos = FAMILIES[family]
    if family not in _TOKENIZERS:
        _TOKENIZERS[family] = build_tokenizer(special, eos, None, bos=bos)
    tok = _TOKENIZERS[family]
    tok.chat_template = template
    tok.pad_token = None
    return tok


def outcome(tok, template, messages, gen):
    try:
        return tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=gen)
    except Exception as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_shipped_template_renders_exactly_the_published_one(family):
    tok = family_tokenizer(family)
    ours, theirs = chat_format.template_text(family), published(FAMILIES[family][0])
    assert chat_format.has_generation_markers(ours) and not chat_format.has_generation_markers(theirs)
    rendered = 0
    for messages, gen in CONVERSATIONS:
        a, b = outcome(tok, ours, messages, gen), outcome(tok, theirs, messages, gen)
        assert a.startswith("refused") == b.startswith("refused"), (family, messages, a, b)
        if not b.startswith("refused"):
            assert a == b, (family, messages)
            rendered += 1
    assert rendered >= 4  # with and without a system message where the format has one, and generation prompts


def _assistant_turns(family: str, messages: list[dict]) -> str:
    end = {"chatml": "<|im_end|>", "smollm2": "<|im_end|>", "llama-3": "<|eot_id|>", "llama-3.2": "<|eot_id|>",
           "mistral-instruct": "</s>", "gemma": "<end_of_turn>"}[family]
    trims = family.startswith(("llama", "gemma"))
    return "".join((m["content"].strip() if trims else m["content"]) + end for m in messages if m["role"] == "assistant")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_shipped_template_marks_exactly_the_answers_and_their_end_token(family):
    tok = family_tokenizer(family, chat_format.template_text(family))
    messages = CONVERSATIONS[1][0]
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(trained) == _assistant_turns(family, messages)
    assert 0 < sum(enc["assistant_masks"]) < len(enc["input_ids"])


@pytest.mark.parametrize("published_name,family,source,chosen", [
    ("meta-llama-3-instruct", "llama-3", "trl", "TRL's training version"),
    ("gemma-it", "gemma", "trl", "TRL's training version"),
    ("qwen2.5-instruct", "chatml", "trl", "TRL's training version"),
    ("chatml-hermes", "chatml", "shipped-twin", "chatml"),
    ("smollm2-instruct", "smollm2", "shipped-twin", "smollm2"),
    ("llama-3.2-instruct", "llama-3.2", "shipped-twin", "llama-3.2"),
    ("mistral-7b-instruct-v0.2", "mistral-instruct", "shipped-twin", "mistral-instruct"),
])
def test_marker_less_template_is_patched_by_trl_or_swapped_for_its_shipped_twin(published_name, family, source,
                                                                                chosen):
    tok = family_tokenizer(family, published(published_name))
    choice = chat_format.choose(tok, {"chat_template": None}, assistant_only=True, model_name="m")
    assert choice.source == source and choice.name.startswith(chosen)
    assert chat_format.has_generation_markers(choice.text)
    for messages, gen in CONVERSATIONS[:4]:  # the training template renders the model's own text
        if not outcome(tok, published(published_name), messages, gen).startswith("refused"):
            assert outcome(tok, choice.text, messages, gen) == outcome(tok, published(published_name), messages, gen)


def test_without_assistant_only_loss_the_tokenizers_own_template_is_kept():
    tok = family_tokenizer("chatml", published("chatml-hermes"))
    choice = chat_format.choose(tok, {"chat_template": None}, assistant_only=False)
    assert choice.source == "tokenizer" and choice.text == published("chatml-hermes")


def test_unknown_marker_less_template_is_refused_with_the_fixes():
    template = ("{% for m in messages %}{{ '### ' + m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '### assistant: ' }}{% endif %}")
    tok = family_tokenizer("chatml", template)
    with pytest.raises(ZephyrError) as err:
        chat_format.choose(tok, {"chat_template": None}, assistant_only=True, model_name="my-model")
    assert "no {% generation %} markers" in err.value.problem and "my-model" in err.value.problem
    assert "model.chat_template" in err.value.fix and "chatml" in err.value.fix
    assert "assistant_only_loss=false" in err.value.fix


def test_a_tokenizer_without_template_needs_one_from_the_recipe():
    tok = family_tokenizer("mistral-instruct", None)
    with pytest.raises(ZephyrError) as err:
        chat_format.choose(tok, {"chat_template": None}, assistant_only=False, model_name="base")
    assert "has no chat template" in err.value.problem and "model.chat_template" in err.value.fix
    choice = chat_format.choose(tok, {"chat_template": "mistral-instruct"}, assistant_only=True)
    assert choice.source == "recipe" and choice.name == "mistral-instruct"


def test_pad_token_is_a_padding_token_of_the_vocabulary_else_the_eos_with_the_reason():
    tok = build_tokenizer(["<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"], "<|eot_id|>", None)
    assert chat_format.ensure_pad_token(tok)["pad_token"] == "<|finetune_right_pad_id|>"
    tok = build_tokenizer(["<s>", "</s>", "<pad>"], "</s>", None)
    done = chat_format.ensure_pad_token(tok)
    assert done["pad_token"] == "<pad>" and tok.pad_token_id != tok.eos_token_id
    tok = build_tokenizer(["<|im_end|>"], "<|im_end|>", None)
    done = chat_format.ensure_pad_token(tok)
    assert done["pad_token"] == "<|im_end|>" and "by position" in done["how"]
    tok = build_tokenizer(["<|im_end|>", "<pad>"], "<|im_end|>", None)
    tok.pad_token = "<pad>"
    assert chat_format.ensure_pad_token(tok) == {"pad_token": "<pad>", "how": "the tokenizer's own"}


def _rows(n=3):
    return [{"messages": [{"role": "user", "content": f"Count: {'a ' * (i + 1)}"},
                          {"role": "assistant", "content": str(i + 1)}]} for i in range(n)]


def test_row_check_passes_a_good_template_and_reports_its_generation_prompt():
    tok = family_tokenizer("chatml", chat_format.template_text("chatml"))
    check = chat_format.check_rows(tok, _rows(), kinds.CHAT, assistant_only=True)
    assert check.rows == 3 and not check.problems
    assert check.end_token == "<|im_end|>" and check.generation_prompt == "<|im_start|>assistant\n"


def test_row_check_finds_an_answer_that_does_not_end_on_an_end_of_turn_token():
    no_end = chat_format.template_text("chatml").replace("message['content'] + '<|im_end|>' }}{% endgeneration %}",
                                                        "message['content'] }}{% endgeneration %}{{ '<|im_end|>' }}")
    assert no_end != chat_format.template_text("chatml")
    tok = family_tokenizer("chatml", no_end)
    check = chat_format.check_rows(tok, _rows(), kinds.CHAT, assistant_only=True)
    assert check.problems and "would not learn to stop" in check.problems[0]
    with pytest.raises(ZephyrError, match="does not train these rows correctly"):
        chat_format.refuse(check, "custom")


def test_row_check_finds_a_generation_prompt_that_is_not_the_assistant_header():
    wrong = chat_format.template_text("chatml").replace(
        "{%- if add_generation_prompt -%}\n{{ '<|im_start|>assistant\\n' }}",
        "{%- if add_generation_prompt -%}\n{{ '<|im_start|>assistant: ' }}")
    assert wrong != chat_format.template_text("chatml")
    tok = family_tokenizer("chatml", wrong)
    check = chat_format.check_rows(tok, _rows(), kinds.CHAT, assistant_only=True)
    assert any("generation prompt" in p for p in check.problems)


def test_row_check_finds_rows_with_nothing_to_train():
    tok = family_tokenizer("chatml", chat_format.template_text("chatml"))
    rows = _rows(2) + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}]
    # An empty answer still trains its end token; a template that marks nothing trains nothing.
    assert not chat_format.check_rows(tok, rows, kinds.CHAT, assistant_only=True).problems
    unmarked = chat_format.template_text("chatml").replace("{% generation %}", "").replace("{% endgeneration %}", "")
    tok.chat_template = unmarked
    check = chat_format.check_rows(tok, rows, kinds.CHAT, assistant_only=True)
    assert check.problems and "no trained tokens" in check.problems[0]


# ------------------------------------------------------------------------------------------- real-model options
REAL_MODELS = ["smollm2-135m-instruct", "smollm2-360m-instruct", "smollm2-1.7b-instruct", "smollm2-360m",
               "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "llama-3.2-1b-instruct", "mistral-7b-instruct-v0.2"]


@pytest.mark.parametrize("option", REAL_MODELS)
def test_every_real_model_option_composes_validates_and_has_a_memory_plan(option):
    from zephyr_recipes import stages
    from zephyr_recipes.runtime import plan
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    cfg = validate(compose("smollm2-360m/sft", [f"model={option}"])[0], "x")
    assert "/" in cfg.model.name_or_path  # a hub id: the real loading code, offline-safe in validate
    spec = cfg.model.chat_template
    assert spec is None or spec in chat_format.shipped_names()
    est, kind, _, source = plan.plan(cfg, stages.get("sft"))
    assert "shipped table" in source and est["total_gb"] > 1


@pytest.mark.parametrize("stage", ["sft", "dpo"])
@pytest.mark.parametrize("hardware", ["1gpu", "qlora-24gb"])
def test_the_smollm2_family_fits_one_24gb_card(cli, stage, hardware):
    code, out, err = cli("plan", f"smollm2-360m/{stage}", f"hardware={hardware}", "hardware.gpu_memory_gb=24")
    assert code == 0, err
    assert "fits: about" in out and "of 24 GB per device" in out
