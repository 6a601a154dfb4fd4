"""``docqa repair``: find the newest complete generation of a KB on disk and make it current again.

A KB goes wrong from outside docqa: a manifest truncated by a full disk or a bad restore, a
generation folder deleted by hand, a store file cut short by a copy. Every commit leaves a copy of
its manifest inside the generation (``generation.json``), so the newest generation whose files all
check out can be named again with the build settings (models, chunker) it was written with.

Each generation on disk, newest first, is checked in full: the SQLite store's ``integrity_check``,
the FAISS index loads and holds one vector per unit, the tantivy index opens and holds one entry
per unit. A dry run (the default) says what it found and what it would do; ``apply`` rewrites the
manifest under the KB's write lock (atomic rename, as a commit does). A generation older than the
one the manifest named loses the changes made after it, and the report says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from docqa.kb.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    SEGMENTS,
    KBError,
    gen_dir,
    generation_file_label,
    generations_on_disk,
    read_manifest,
    segment_files,
    write_manifest,
)
from docqa.settings import Settings


@dataclass
class GenerationCheck:
    generation: int
    problems: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    record: dict | None = None  # the manifest committed with it (generation.json), if readable
    segments: list[str] | None = None  # its segment names, oldest first; None: a format-1 generation

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RepairPlan:
    name: str
    root: Path
    manifest_problem: str | None  # why the current manifest cannot be used; None: it reads fine
    named: int | None  # the generation the manifest names, when it can be read
    checks: list[GenerationCheck]
    chosen: GenerationCheck | None
    notes: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return self.manifest_problem is not None or self.chosen is None or self.chosen.generation != self.named

    def to_dict(self) -> dict:
        return {"kb": self.name, "manifest_problem": self.manifest_problem, "named_generation": self.named,
                "repair_needed": self.needed, "chosen_generation": self.chosen.generation if self.chosen else None,
                "generations": [{"generation": c.generation, "ok": c.ok, "problems": c.problems, "counts": c.counts}
                                for c in self.checks], "notes": self.notes}


def check_generation(root: Path, generation: int, lexical_backend: str = "tantivy") -> GenerationCheck:
    """Check every file of one generation (see the module docstring); never raises."""
    check = GenerationCheck(generation)
    gdir = gen_dir(root, generation)
    record_path = gdir / "generation.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            check.record = record if isinstance(record, dict) and isinstance(record.get("build"), dict) else None
        except (OSError, ValueError):
            pass
        if check.record is None:
            check.problems.append("generation.json is unreadable")
    try:
        files = _segments_of(gdir, check.record)
    except KBError as e:
        check.problems.append(str(e))
        return check
    check.segments = None if files and files[0][0] == "store" else [name for name, _, _ in files]
    for _, store, vectors in files:
        rows = _check_store(store, check)
        if rows is None:
            return check
        _check_vectors(vectors, rows, check)
    if check.problems:
        return check
    units = _live_counts([store for _, store, _ in files], check)
    if units is None:
        return check
    if lexical_backend == "tantivy":
        _check_lexical(gdir / "lexical", units, check)
    return check


def _segments_of(gdir: Path, record: dict | None) -> list[tuple[str, Path, Path]]:
    """The segments of a generation: as its generation.json lists them; without one, what its folder holds."""
    if record is not None:
        return segment_files(gdir, record)
    if (gdir / SEGMENTS).is_dir():
        names = sorted(p.stem for p in (gdir / SEGMENTS).glob("s*.sqlite"))
        return segment_files(gdir, {"segments": names})
    return segment_files(gdir, {})


def _live_counts(stores: list[Path], check: GenerationCheck) -> int | None:
    """The generation's live documents and units (tombstones applied) into ``check.counts``."""
    import sqlite3

    from docqa.kb.store import UnitStore

    try:
        store = UnitStore(stores)
        try:
            check.counts = store.counts()
        finally:
            store.close()
    except (sqlite3.Error, KBError) as e:
        check.problems.append(f"the segments cannot be read together ({e})")
        return None
    return int(check.counts["units"])


def _check_store(path: Path, check: GenerationCheck) -> int | None:
    import sqlite3

    label = generation_file_label(path)
    if not path.is_file():
        check.problems.append(f"{label} is missing")
        return None
    incomplete = f"an incomplete generation: a writer stopped while writing it ({label} holds an unfinished " \
                 "transaction)"
    if any(path.with_name(path.name + end).is_file() for end in ("-journal", "-wal")):
        check.problems.append(incomplete)
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                check.problems.append(f"{label} fails its integrity check ({verdict})")
                return None
            rows = conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:  # a hot journal read-only reads as "attempt to write a readonly database"
        check.problems.append(incomplete if "readonly" in str(e) else f"{label} cannot be read ({e})")
        return None
    return int(rows)


def _check_vectors(path: Path, units: int, check: GenerationCheck) -> None:
    if not path.is_file():
        check.problems.append(f"{generation_file_label(path)} is missing")
        return
    try:
        from docqa.vector_index import VectorIndex

        n = len(VectorIndex.load(path))
    except Exception as e:  # faiss: RuntimeError with its C++ message
        check.problems.append(f"{generation_file_label(path)} cannot be read ({str(e).strip().splitlines()[0][:160]})")
        return
    if n != units:
        check.problems.append(f"{generation_file_label(path)} holds {n} vectors for {units} units")


def _check_lexical(path: Path, units: int, check: GenerationCheck) -> None:
    if not path.is_dir():
        check.problems.append("the keyword index (lexical/) is missing")
        return
    try:
        from docqa.lexical.tantivy_index import TantivyIndex

        n = len(TantivyIndex(path, readonly=True))
    except Exception as e:  # tantivy: ValueError with its Rust message
        check.problems.append(f"the keyword index cannot be read ({str(e)[:160]})")
        return
    if n != units:
        check.problems.append(f"the keyword index holds {n} entries for {units} units")


def plan_repair(name: str, settings: Settings) -> RepairPlan:
    """Check the manifest and every generation on disk; choose the newest complete one."""
    from docqa.kb.manifest import kb_path

    root = kb_path(settings, name)
    manifest, problem = None, None
    try:
        manifest = read_manifest(root)
    except KBError as e:
        problem = str(e)
    gens = generations_on_disk(root)
    if manifest is None and not gens and not root.is_dir():
        raise KBError(f"knowledge base {name!r} not found under {settings.home}")
    named = int(manifest["generation"]) if manifest else None
    backend = str((manifest or {}).get("build", {}).get("lexical_backend", settings.lexical_backend.value))
    checks = [check_generation(root, g, backend) for g in reversed(gens)]
    chosen = next((c for c in checks if c.ok), None)
    plan = RepairPlan(name, root, problem, named, checks, chosen)
    if manifest is not None and named and named not in gens:
        plan.manifest_problem = f"the manifest names generation {named}, whose folder is missing"
    elif manifest is not None and named and chosen and chosen.generation != named:
        bad = next(c for c in checks if c.generation == named)
        plan.manifest_problem = f"generation {named}, which the manifest names, is damaged: {'; '.join(bad.problems)}"
    if chosen is not None:
        if named and chosen.generation < named:
            plan.notes.append(f"generation {chosen.generation} is older than the one the manifest named ({named}): "
                              "changes committed after it are lost; ingest those files again")
        if chosen.record is None:
            plan.notes.append("this generation was written before docqa kept its build settings beside it: the "
                              + ("old manifest's" if manifest else "current default") + " build settings are used; "
                              "check `docqa kbs --json` and run `docqa reindex` if the models differ")
    return plan


def apply_repair(plan: RepairPlan, settings: Settings) -> dict:
    """Make ``plan.chosen`` the current generation (under the write lock); returns the new manifest."""
    from docqa.kb.writer import KBWriter

    if plan.chosen is None:
        raise KBError(f"knowledge base {plan.name!r} has no complete generation on disk: nothing to restore; "
                      "restore the folder from a backup or ingest the documents into a new KB")
    chosen = plan.chosen
    try:
        old = read_manifest(plan.root)
    except KBError:
        old = {}
    base = chosen.record or old or {"build": settings.build_settings(), "created_at": time.time()}
    manifest = {**base, "format_version": FORMAT_VERSION, "name": plan.name, "generation": chosen.generation,
                "counts": chosen.counts, "updated_at": time.time(), "segments": chosen.segments,
                "repaired": {"at": time.time(), "from": plan.manifest_problem or "manifest named a damaged generation"}}
    if chosen.segments is None:  # a format-1 generation: its store.sqlite and vectors.faiss
        manifest.pop("segments")
    with KBWriter.lock_only(plan.name, settings):
        write_manifest(plan.root, manifest)
    return manifest


__all__ = ["MANIFEST", "GenerationCheck", "RepairPlan", "apply_repair", "check_generation", "plan_repair"]
