"""The bench scripts run end to end on tiny slices of the shared data and write sane reports.

The figures themselves are not checked (they belong in bench/reports/); what is checked is that
each script's ``main`` builds its KB through the real pipeline, measures every mode, and writes a
report whose numbers are internally consistent (recall grows with depth, rates lie in [0, 1]).
The helpers that decide results (metrics, threshold choice) are checked on data where the right
answer is known.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _bench(name: str):
    return importlib.import_module(f"bench.{name}")


def _table_rows(report: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in report.splitlines()
            if line.startswith("| ") and not line.startswith("| dataset") and not line.startswith("| what")
            and not line.startswith("| half") and not line.startswith("| passages")]


def test_metrics_on_known_ranks():
    common = _bench("common")
    ranks = [1, 3, None, 12]
    assert common.recall_at(ranks, 1) == 0.25
    assert common.recall_at(ranks, 5) == 0.5
    assert common.recall_at(ranks, 20) == 0.75
    assert common.mrr_at(ranks, 10) == pytest.approx((1 + 1 / 3) / 4)
    assert common.first_hit_rank(["a", "b", "gold", "gold"], "gold") == 3
    assert common.first_hit_rank(["a"], "gold") is None


def test_threshold_separates_scores_it_can_separate():
    cal = _bench("calibrate_refusal")
    items = [cal.Item(f"q{i}", i, True, [], "answerable", score=s) for i, s in enumerate([0.8, 0.9, 0.7])]
    items += [cal.Item(f"r{i}", i, False, [], "impossible", score=s) for i, s in enumerate([0.2, 0.4, 0.1])]
    t = cal.choose_threshold(items)
    assert 0.4 < t <= 0.7
    c = cal.confusion(items, t)
    assert c["balanced_acc"] == 1.0 and c["answer_rate"] == 1.0 and c["refusal_rate"] == 1.0


def test_squad_loader_dedupes_and_limits(shared_data):
    common = _bench("common")
    passages, questions = common.load_squad(common.Dataset.CMRC, 10)
    assert len(questions) == 10
    assert len({p.text for p in passages}) == len(passages)
    assert {q.gold for q in questions} <= {p.pid for p in passages}


def test_unknown_dataset_is_a_clear_error(capsys):
    assert _bench("retrieval").main(["--datasets", "nope"]) == 2
    assert "choose from" in capsys.readouterr().err


@pytest.mark.slow
def test_retrieval_main_on_a_slice(shared_data, embed_model, tmp_path):
    out = tmp_path / "retrieval.md"
    assert _bench("retrieval").main(["--datasets", "cmrc", "--limit-questions", "6", "--out", str(out)]) == 0
    rows = _table_rows(out.read_text(encoding="utf-8"))
    modes = [r[1] for r in rows]
    assert modes[:2] == ["keyword", "dense"] and modes[2].startswith("hybrid")
    for r in rows:
        r1, r5, r20, mrr = map(float, r[2:6])
        assert 0 <= r1 <= r5 <= r20 <= 1 and r1 <= mrr <= r5 + 1e-9
        assert r[6] == "6"
    keyword = rows[0]
    assert float(keyword[4]) > 0  # questions about a 2-passage KB: keyword search must find some


@pytest.mark.slow
def test_latency_main_on_a_slice(shared_data, embed_model, tmp_path):
    out = tmp_path / "latency.md"
    args = ["--units", "120", "--base-units", "12", "--throughput-passages", "2", "--queries", "4", "--warmup", "1",
            "--cost-passages", "5", "--cost-rounds", "1", "--out", str(out)]
    assert _bench("latency").main(args) == 0
    report = out.read_text(encoding="utf-8")
    for what in ("query encoding only", "search hybrid k=5", "search dense k=5", "search keyword k=5"):
        row = next(r for r in _table_rows(report) if r[0] == what)
        p50, p95, p99 = map(float, row[1:4])
        assert 0 < p50 <= p95 <= p99
    assert re.search(r"120 segment units", report)
    size = float(re.search(r"\*\*([\d.]+) MiB per 100k units\*\*", report).group(1))
    assert size > 0
    cost = {r[0]: r for r in _table_rows(report) if r[1] == "torch"}
    assert set(cost) == {"multilingual-e5-small", "all-MiniLM-L6-v2"}
    for r in cost.values():
        floor, default = float(r[4]), float(r[5])
        assert 0 < floor and 0 < default  # the ratio itself is the bench's figure, not a test's


@pytest.mark.slow
def test_calibrate_refusal_main_on_a_slice(shared_data, embed_model, tmp_path):
    out = tmp_path / "refusal.md"
    assert _bench("calibrate_refusal").main(["--cases", "4", "--holdout-every", "2", "--out", str(out)]) == 0
    report = out.read_text(encoding="utf-8")
    t = float(re.search(r"Chosen refusal_threshold = ([\d.]+)", report).group(1))
    assert t >= 0
    rows = [r for r in _table_rows(report) if r[0].startswith(("calibration", "report"))]
    assert len(rows) >= 4
    for r in rows[:4]:
        assert all(0 <= float(x) <= 1 for x in r[2:6])


def test_hostile_files_bench_rejects_every_hostile_file_and_keeps_the_good_one(tmp_path):
    result = _bench("hostile_files").main(["--small", "--out", str(tmp_path)])
    verdicts = {r["file"]: r["verdict"] for r in result["rows"]}
    assert verdicts.pop("good file") == "ingested"
    assert set(verdicts.values()) == {"rejected"} and len(verdicts) == 8
    assert result["batch"]["good_file_found"] and len(result["batch"]["failures"]) == 8
    report = (tmp_path / "hostile_files.md").read_text(encoding="utf-8")
    assert "Aim met" in report and "| docx zip bomb |" in report and "| docx lying zip directory |" in report


def test_compliance_evasion_bench_counts_by_rule(shared_data, tmp_path):
    result = _bench("compliance_evasion").main(["--clean", "60", "--out", str(tmp_path / "ev.md")])
    assert result["evasions"] >= 500 and result["clean"] == 60
    rules = result["per_rule"]
    assert {"separators", "zero-width", "traditional", "full-width", "pinyin initials", "case"} <= set(rules)
    assert sum(r["total"] for r in rules.values()) == result["evasions"]
    assert 0 <= result["false_block_rate"] <= 1 and result["exact_matcher_catch_rate"] < result["catch_rate"]
    assert "| **all** |" in (tmp_path / "ev.md").read_text(encoding="utf-8")


def test_eval_gate_writes_baselines_then_fails_a_regression_with_exit_3(e5_model, tmp_path):
    gate = _bench("eval_gate")
    base = tmp_path / "baselines"
    assert gate.main(["--sets", "statutes", "--baselines", str(base), "--update", "--out", str(tmp_path / "a.md")]) == 0
    stored = json.loads((base / "statutes.json").read_text(encoding="utf-8"))
    assert stored["questions"] > 30 and 0 <= stored["hit@5"] <= 1
    stored["answer_contains"] = 1.5  # a baseline no run can meet: the gate must fail
    (base / "statutes.json").write_text(json.dumps(stored), encoding="utf-8")
    assert gate.main(["--sets", "statutes", "--baselines", str(base), "--out", str(tmp_path / "b.md")]) == 3
    assert "**Regressions:** statutes: answer_contains" in (tmp_path / "b.md").read_text(encoding="utf-8")
