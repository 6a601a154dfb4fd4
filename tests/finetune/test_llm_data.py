"""SFT data formats, their error messages, --mix and the epochs heuristic."""

from __future__ import annotations

import json

import pytest

from finetune.llm.data import DataFormat, load_conversations, mix, parse_mix
from finetune.llm.train import default_epochs
from finetune.records import DataFormatError


def _jsonl(path, rows: list) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows),
                    encoding="utf-8")
    return str(path)


def test_three_formats_become_the_same_conversation_shape(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [
        {"instruction": "翻译", "input": "hello", "output": "你好", "system": "你是助手"},
        {"prompt": "第二问", "response": "第二答", "history": [["第一问", "第一答"]]},
        {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]},
    ])
    convs = load_conversations(f)
    assert [m["role"] for m in convs[0]] == ["system", "user", "assistant"]
    assert convs[0][1]["content"] == "翻译\n\nhello" and convs[0][2]["content"] == "你好"
    assert [m["content"] for m in convs[1]] == ["第一问", "第一答", "第二问", "第二答"]
    assert convs[2] == [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]


def test_json_array_file_and_u2028_inside_a_record(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"instruction": "a\u2028b", "input": "", "output": "c"}] * 2, ensure_ascii=False,
                            indent=2), encoding="utf-8")
    convs = load_conversations(p, DataFormat.ALPACA)
    assert len(convs) == 2 and convs[0][0]["content"] == "a\u2028b"


@pytest.mark.parametrize("rows, line, reason", [
    ([{"instruction": "a", "output": "b"}, "{not json"], 2, "invalid JSON"),
    ([{"instruction": "a", "output": "b"}, {"instruction": "a"}], 2, "missing required field 'output'"),
    ([{"messages": [{"role": "user", "content": "q"}]}], 1, "last message must be the assistant"),
    ([{"messages": [{"role": "bot", "content": "q"}]}], 1, "messages[0]"),
    (["", {"prompt": "q", "response": "a", "history": [["only one"]]}], 2, "history[0]"),
    ([{"foo": 1}], 1, "unknown record"),
    (["[1, 2]"], 1, "expected a JSON object"),
])
def test_format_errors_name_line_and_reason(tmp_path, rows, line, reason):
    f = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataFormatError) as e:
        load_conversations(f)
    assert e.value.line == line and reason in e.value.reason
    assert str(e.value).startswith(f"{f}:{line}: ")


def test_json_array_error_points_at_the_element_line(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a"}\n]', encoding="utf-8")
    with pytest.raises(DataFormatError) as e:
        load_conversations(p)
    assert e.value.line == 3


def test_mix_ratio_and_spec_errors():
    domain = [[{"role": "user", "content": f"d{i}"}] for i in range(10)]
    general = [[{"role": "user", "content": f"g{i}"}] for i in range(100)]
    out = mix(domain, [(general, 0.5)])
    assert len(out) == 15 and sum(c[0]["content"].startswith("g") for c in out) == 5
    assert len(mix(domain, [(general[:3], 1.0)])) == 13  # a small general set is used whole
    assert parse_mix("data/general.json:1") == ("data/general.json", 1.0)
    for bad in ("general.json", "general.json:x", "general.json:0", ":1"):
        with pytest.raises(ValueError, match="FILE:RATIO"):
            parse_mix(bad)


def test_epochs_heuristic_anchors_and_monotone():
    assert default_epochs(10) == 15 and default_epochs(100) == 15
    assert default_epochs(1000) == 10
    assert default_epochs(10_000) == 2 and default_epochs(1_000_000) == 2
    assert 10 < default_epochs(300) < 15 and 2 < default_epochs(3000) < 10
    values = [default_epochs(n) for n in range(1, 20_000, 37)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
