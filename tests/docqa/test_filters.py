"""Groups and metadata filters applied inside retrieval: a document a filter excludes is never a
candidate (FAISS selector, tantivy term-set clause), so it cannot take a rank from an allowed one;
metadata comes from sidecars, JSONL records and ``--groups``, and a metadata-only change re-ingests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docqa.doc_meta import MetaError, clean_meta
from docqa.filters import FilterError, doc_filter, parse_where
from docqa.kb import KnowledgeBase
from docqa.search import search
from docqa.settings import load_settings
from ingest.pipeline import ingest_paths

pytestmark = pytest.mark.usefixtures("embed_model")

SALARY = "Salary bands for 2024: engineers level five earn between forty and fifty thousand per month."
PUBLIC = {
    "canteen.md": "# Canteen\n\nLunch is served from noon until two in the afternoon on weekdays.\n",
    "leave.md": "# Annual leave\n\nEmployees earn fifteen days of annual leave per year of service.\n",
    "pay.md": "# Pay day\n\nSalaries are paid on the tenth day of each month by bank transfer.\n",
}


def _write(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for name, text in PUBLIC.items():
        (docs / name).write_text(text, encoding="utf-8")
    (docs / "bands.md").write_text(f"# Salary bands\n\n{SALARY}\n", encoding="utf-8")
    (docs / "bands.md.meta.json").write_text(json.dumps({"groups": ["hr"], "tags": ["pay"], "date": "2024-01-05"}),
                                             encoding="utf-8")
    (docs / "pay.meta.json").write_text(json.dumps({"tags": ["pay", "bank"], "date": "2019-03-01"}), encoding="utf-8")
    records = [{"id": "r1", "title": "Board minutes", "text": "The board approved the merger with Quokka Ltd in "
                "a closed session.", "groups": "board", "date": "2023-11-30"},
               {"id": "r2", "title": "Office hours", "text": "The office is open from eight to six.",
                "tags": ["office"]}]
    (docs / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return docs


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("filters")
    docs = _write(root)
    settings = load_settings(home=root / "home")
    report = ingest_paths([docs], "filters", settings, progress=False)
    assert not report.failures, report.failures
    base = KnowledgeBase.open("filters", settings)
    yield base
    base.close()


def names(hits) -> set[str]:
    return {h.title for h in hits}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_a_group_document_is_never_a_candidate_for_a_caller_without_the_group(kb, mode) -> None:
    # the query is the protected sentence itself: without the filter it is the top hit
    assert search(kb, SALARY, 3, mode=mode)[0].title == "Salary bands"
    hits = search(kb, SALARY, 10, mode=mode, where=doc_filter(["staff"]))
    assert "Salary bands" not in names(hits) and "Board minutes" not in names(hits)
    assert all(SALARY not in h.text for h in hits)
    if mode != "keyword":  # the filter runs inside FAISS: k allowed hits come back, not k minus the forbidden
        assert len(hits) == 4  # the three public files and the public JSONL record
    assert search(kb, SALARY, 3, mode=mode, where=doc_filter(["hr"]))[0].title == "Salary bands"
    board = search(kb, "merger approved by the board", 5, mode=mode, where=doc_filter(["board"]))
    assert "Board minutes" in names(board)


def test_dense_ranking_among_allowed_documents_is_unchanged_by_forbidden_ones(kb) -> None:
    """Dense scores do not depend on other documents: the filtered ranking equals the unfiltered one
    with the forbidden documents removed, and scores are the same."""
    full = search(kb, "how much are engineers paid", 10, mode="dense")
    filtered = search(kb, "how much are engineers paid", 10, mode="dense", where=doc_filter([]))
    expected = [(h.unit_id, round(h.score, 5)) for h in full if h.title not in ("Salary bands", "Board minutes")]
    assert [(h.unit_id, round(h.score, 5)) for h in filtered] == expected


def test_metadata_filters_equality_membership_and_date_range(kb) -> None:
    q = "when is pay day and salary"
    assert names(search(kb, q, 10, where=doc_filter(None, {"tags": "pay"}))) == {"Pay day", "Salary bands"}
    assert names(search(kb, q, 10, where=doc_filter(None, {"tags": {"in": ["office", "bank"]}}))) == \
        {"Pay day", "Office hours"}
    assert names(search(kb, q, 10, where=doc_filter(None, {"date": {"gte": "2023-01-01", "lt": "2024-12-31"}}))) == \
        {"Salary bands", "Board minutes"}
    # groups and metadata together: the date range admits the HR document, the caller's groups do not
    assert names(search(kb, q, 10, where=doc_filter(["board"], {"date": {"gte": "2023-01-01"}}))) == {"Board minutes"}
    assert search(kb, q, 10, where=doc_filter(None, {"title": "No such title"})) == []


def test_a_groups_condition_narrows_what_the_key_sees_and_never_widens_it(kb) -> None:
    assert len(kb.allowed(doc_filter(["hr"], {"groups": "hr"})).doc_ids) == 1  # its own, not the public four
    assert len(kb.allowed(doc_filter([], {"groups": "hr"})).doc_ids) == 0  # a key without hr: still nothing
    assert len(kb.allowed(doc_filter(["board"], {"groups": {"in": ["hr", "board"]}})).doc_ids) == 1


# (filters, accepted?): what the API schema and parse_where must agree on
SCHEMA_CASES = [
    ({"tags": "pay"}, True), ({"n": 3}, True), ({"ok": True}, True), ({"tags": {"in": ["a", 1, False]}}, True),
    ({"date": {"gte": "2020", "lt": "2024"}}, True), ({"v": {"gt": 1.5}}, True), ({"groups": "hr"}, True),
    ({"v": {"gte": 1, "lte": "2"}}, True),  # mixed bounds: no value is both a number and text, so none passes
    ({"v": None}, False), ({"v": [1]}, False), ({"v": {}}, False), ({"v": {"in": []}}, False),
    ({"v": {"in": "a"}}, False), ({"v": {"after": "2020"}}, False), ({"v": {"in": [1], "gt": 0}}, False),
    ({"v": {"gt": True}}, False), ({"v": {"in": [None]}}, False), ({"": 1}, False), ({"x" * 65: 1}, False),
    ({f"f{i}": 1 for i in range(17)}, False), ({"v": {"in": list(range(257))}}, False),
]


@pytest.mark.parametrize(("where", "accepted"), SCHEMA_CASES)
def test_the_filters_schema_states_exactly_what_the_server_accepts(where: dict, accepted: bool) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs",
                                        reason="jsonschema-rs is in the dev extra that deploy/install.sh installs")
    from docqa.filters import json_schema

    assert jsonschema_rs.validator_for(json_schema()).is_valid(where) is accepted
    if accepted:
        parse_where(where)
    else:
        with pytest.raises(FilterError):
            parse_where(where)
    if where == {"v": {"gte": 1, "lte": "2"}}:
        assert not doc_filter(None, where).allows({"meta": {"v": 1}}) and \
            not doc_filter(None, where).allows({"meta": {"v": "1"}})


def test_allowed_sets_are_cached_per_view_and_open_filters_cost_nothing(kb) -> None:
    assert kb.allowed(doc_filter(None)) is None
    assert kb.allowed(doc_filter(["hr", "board"])) is None  # every document passes: no selector at all
    assert len(kb.allowed(doc_filter(["hr"])).doc_ids) == 5  # the public four and its own
    b = kb.allowed(doc_filter([]))
    assert b is kb.allowed(doc_filter([])) and len(b.doc_ids) == 4


def test_bad_filters_name_the_field_and_why() -> None:
    with pytest.raises(FilterError, match="'date'.*unknown operator"):
        parse_where({"date": {"after": "2020"}})
    with pytest.raises(FilterError, match="'tags'.*non-empty list"):
        parse_where({"tags": {"in": []}})
    with pytest.raises(FilterError, match="not a string, number"):
        parse_where({"v": [1]})
    with pytest.raises(MetaError, match="path is set by docqa"):
        clean_meta({"path": "/etc"}, "upload")
    with pytest.raises(MetaError, match="'\\*' is reserved"):
        clean_meta({"groups": ["*"]}, "upload")


def test_metadata_only_changes_reingest_and_bad_sidecars_fail_that_file_only(tmp_path: Path) -> None:
    docs = _write(tmp_path)
    settings = load_settings(home=tmp_path / "home")
    first = ingest_paths([docs], "meta", settings, progress=False)
    assert first.added == 6
    # edit only the sidecar: bands.md must move to the board group; nothing else is touched
    (docs / "bands.md.meta.json").write_text(json.dumps({"groups": ["board"]}), encoding="utf-8")
    (docs / "canteen.md.meta.json").write_text("{not json", encoding="utf-8")
    second = ingest_paths([docs], "meta", settings, progress=False)
    assert second.updated == 1 and second.unchanged == 4 + 0  # pay, leave, and the two JSONL records
    assert [Path(f.path).name for f in second.failures] == ["canteen.md"]
    assert "canteen.md.meta.json is not readable JSON" in second.failures[0].reason
    kb = KnowledgeBase.open("meta", settings)
    try:
        assert "Salary bands" in names(search(kb, SALARY, 3, where=doc_filter(["board"])))
        assert "Salary bands" not in names(search(kb, SALARY, 3, where=doc_filter(["hr"])))
    finally:
        kb.close()
    # --groups is the run's default: files without their own groups get it
    third = ingest_paths([docs / "leave.md"], "meta", settings, progress=False, meta={"groups": ["staff"]})
    assert third.updated == 1
    kb = KnowledgeBase.open("meta", settings)
    try:
        assert "Annual leave" not in names(search(kb, "annual leave days", 5, where=doc_filter([])))
        assert "Annual leave" in names(search(kb, "annual leave days", 5, where=doc_filter(["staff"])))
    finally:
        kb.close()


def test_a_jsonl_record_with_unusable_groups_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"id": "a", "text": "hello there", "groups": [1, 2]}) + "\n", encoding="utf-8")
    report = ingest_paths([f], "badgroups", load_settings(home=tmp_path / "home"), progress=False)
    assert len(report.failures) == 1 and "line 1" in report.failures[0].reason
    assert "'groups' must be a list of names" in report.failures[0].reason


_CONCURRENT = r"""
import sys, threading
from pathlib import Path
from docqa.filters import doc_filter
from docqa.kb import KnowledgeBase
from docqa.search import search
from docqa.settings import load_settings
kb = KnowledgeBase.open("filters", load_settings(home=Path(sys.argv[1])))
flt = doc_filter(["staff"])  # one filter: every thread gets the same cached Allowed
queries = [sys.argv[2], "annual leave days", "merger approved by the board", "lunch on weekdays"]
leaks = []
def work(i):
    for j in range(150):
        for h in search(kb, queries[(i + j) % len(queries)], 5, mode="dense", where=flt):
            if h.title in ("Salary bands", "Board minutes"):
                leaks.append(h.title)
threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print("leaks", len(leaks))
"""


def test_concurrent_searches_with_one_filter_neither_crash_nor_leak(kb) -> None:
    """The allowed units' FAISS search parameters were cached per filter and shared by concurrent requests;
    FAISS's ID map swaps the selector inside them while it searches, so two threads crashed the process
    (a segfault) or let units of other groups through. Six threads, one filter, in a child process (a
    crash is a failed test, not a dead test run)."""
    import subprocess
    import sys

    home = kb.root.parent
    proc = subprocess.run([sys.executable, "-c", _CONCURRENT, str(home), SALARY], capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-800:]}"
    assert proc.stdout.strip().splitlines()[-1] == "leaks 0", proc.stdout
