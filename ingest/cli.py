"""`docqa ingest | delete | docs | search | reindex | kbs | repair`: the knowledge-base commands."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click


def load_settings(**overrides):
    from docqa.settings import load_settings as _load

    return _load(**overrides)

kb_option = click.option("--kb", "kb", required=True, metavar="NAME", help="Knowledge base name.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


class Interrupted(click.ClickException):
    """Ctrl-C during a KB change: one line saying what state the KB is in, exit status 130."""

    exit_code = 130

    def show(self, file=None) -> None:
        lead = "\n" if sys.stderr.isatty() else ""  # the progress bar or ^C is on the current line
        click.echo(f"{lead}interrupted: {self.message}", err=True)


@contextlib.contextmanager
def _rolled_back_on_interrupt(kb: str):
    """The writer has already rolled back when KeyboardInterrupt reaches here; say so, once."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"nothing was committed; knowledge base {kb!r} is as it was before") from None


def _echo_ingest_summary(report) -> None:
    """Totals on stdout; each failed file with its reason on stderr, so it is never lost in the totals."""
    c, r = report.counts, report
    docs = f"{r.added} added, {r.updated} updated, {r.unchanged} unchanged" + (
        f", {r.removed} removed" if r.removed else "")
    click.echo(f"{r.kb}: {r.files} files: documents {docs}; {r.units} units written in {r.seconds:.1f}s")
    if r.committed:
        click.echo(f"{r.kb}: committed generation {r.generation}: {c.get('docs', 0)} documents, "
                   f"{c.get('units', 0)} units")
    else:
        click.echo(f"{r.kb}: nothing to commit; {c.get('docs', 0)} documents, {c.get('units', 0)} units as before")
    for note in r.notices:
        click.echo(f"note: {note}", err=True)
    if r.flagged:
        click.echo(f"{len(r.flagged)} flagged by screening (ingested; `screen: reject` refuses them):", err=True)
        for f in r.flagged:
            found = "; ".join(f"{x['kind']} {x['match']!r}" for x in f["flags"][:3])
            click.echo(f"  {f['source']}: {found}", err=True)
    if r.warnings:
        click.echo(f"{len(r.warnings)} warnings (those files were ingested without the parts named):", err=True)
        for f in r.warnings:
            click.echo(f"  {f.path}: {f.reason}", err=True)
    if r.failures:
        click.echo(f"{len(r.failures)} failed (skipped; everything else was ingested):", err=True)
        for f in r.failures:
            click.echo(f"  {f.path}: {f.reason}", err=True)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@kb_option
@json_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--groups", default=None, metavar="A,B",
              help="Document groups for every document of this run (only API keys holding one of them may read "
                   "those documents); a sidecar NAME.meta.json or a JSONL record's own 'groups' wins.")
@click.option("--meta", "meta_pairs", multiple=True, metavar="KEY=VALUE",
              help="Metadata for every document of this run, to filter on (repeatable); sidecars and records win.")
@click.option("--ocr", type=click.Choice(["auto", "always", "never"]), default=None,
              help="OCR of PDF pages: where the text layer is unusable (auto, the default), every page, or never. "
                   "Setting: ocr.")
@click.option("--chunker", type=click.Choice(["fixed", "embedding", "nsp"]), default=None,
              help="Chunker of a NEW knowledge base (a build setting: an existing KB changes it with `docqa reindex`). "
                   "nsp needs --nsp-model.")
@click.option("--nsp-model", default=None, metavar="DIR",
              help="Boundary model for --chunker nsp: a directory written by `docqa finetune nsp` (or an HF id).")
def ingest(paths: tuple[str, ...], kb: str, as_json: bool, no_progress: bool, groups: str | None,
           meta_pairs: tuple[str, ...], ocr: str | None, chunker: str | None, nsp_model: str | None) -> None:
    """Ingest files and folders (recursively) into a knowledge base, creating it if needed.

    Supported: .pdf (scans by OCR) .docx .doc (with LibreOffice) .html/.htm .md/.markdown .txt .jsonl and images
    (.png .jpg .jpeg .tif .tiff .bmp .webp, by OCR). Unchanged files are skipped; changed files (or changed
    metadata) replace their old units. Exit code 1 when some files failed (the rest is committed).
    """
    from docqa.doc_meta import MetaError, clean_meta
    from ingest.pipeline import ingest_paths

    meta: dict = {}
    for pair in meta_pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        meta[key.strip()] = value
    if groups is not None:
        meta["groups"] = groups
    try:
        meta = clean_meta(meta, "--groups/--meta")
    except MetaError as e:
        raise click.BadParameter(str(e)) from None
    settings = load_settings(**({"ocr": ocr} if ocr else {}), **_chunker_overrides(kb, chunker, nsp_model))
    with _rolled_back_on_interrupt(kb):
        report = ingest_paths(list(paths), kb, settings, progress=not no_progress and sys.stderr.isatty(), meta=meta)
    if as_json:
        _echo_json(report.to_dict())
    else:
        _echo_ingest_summary(report)
    if report.failures:
        sys.exit(1)


def _chunker_overrides(kb: str, chunker: str | None, nsp_model: str | None) -> dict:
    """Build settings asked for on the command line, checked before anything is read: the KB's own
    build settings win once it exists, so a different chunker there is a mistake to say, not to ignore."""
    want = {k: v for k, v in (("chunker", chunker), ("nsp_model", nsp_model)) if v}
    if not want:
        return {}
    if want.get("chunker", "nsp") == "nsp" and not (nsp_model or load_settings().nsp_model):
        raise click.UsageError("--chunker nsp needs --nsp-model DIR (train one with `docqa finetune nsp`)")
    if nsp_model and ("/" in nsp_model or nsp_model.startswith(".")) and not Path(nsp_model).expanduser().exists():
        raise click.BadParameter(f"{nsp_model} does not exist", param_hint="--nsp-model")
    from docqa.kb.manifest import KBError, kb_path, read_manifest

    try:
        build = read_manifest(kb_path(load_settings(), kb)).get("build", {})
    except KBError:  # no such KB yet (or one that cannot be read: ingest itself says why)
        return want
    differ = {k: v for k, v in want.items() if build.get(k) != v}
    if differ:
        have = ", ".join(f"{k} {build.get(k)!r}" for k in differ)
        args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in want.items())
        raise click.UsageError(f"knowledge base {kb!r} is built with {have}; build settings are fixed for the life "
                               f"of a KB: `docqa reindex --kb {kb} {args}` rebuilds it")
    return want


@click.command()
@click.argument("targets", nargs=-1, required=True)
@kb_option
def delete(targets: tuple[str, ...], kb: str) -> None:
    """Delete documents by DOC_ID, file PATH (a JSONL path deletes all its records) or FOLDER."""
    from ingest.pipeline import delete_documents

    with _rolled_back_on_interrupt(kb):
        deleted, missing = delete_documents(kb, list(targets), load_settings())
    click.echo(f"deleted {len(deleted)} document(s)" + (f": {', '.join(deleted)}" if deleted else ""))
    for m in missing:
        click.echo(f"  not in {kb}: {m}", err=True)
    if missing:
        sys.exit(1)


@click.command()
@kb_option
@json_option
def docs(kb: str, as_json: bool) -> None:
    """List the documents of a knowledge base."""
    from docqa.kb import KnowledgeBase

    base = KnowledgeBase.open(kb, load_settings())
    rows = base.store.list_docs()
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        flags = sorted({f.get("kind", "?") for f in (r["meta"].get("screen") or [])})
        mark = f"  FLAGGED: {', '.join(flags)}" if flags else ""
        click.echo(f"{r['doc_id']}  {r['units']:>5} units  {r['title']}  ({r['source']}){mark}")
    click.echo(f"{len(rows)} documents", err=True)


@click.command()
@click.argument("query")
@kb_option
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default="hybrid", show_default=True)
@click.option("--filter", "where", default=None, metavar="JSON",
              help='Metadata filter, e.g. \'{"tags": {"in": ["leave"]}, "date": {"gte": "2020-01-01"}}\'.')
@click.option("--groups", default=None, metavar="A,B",
              help="Search as a caller holding these groups (default: every document, as the KB's owner).")
@json_option
def search(query: str, kb: str, k: int, mode: str, where: str | None, groups: str | None, as_json: bool) -> None:
    """Hybrid search: dense + keyword retrieval fused with reciprocal rank fusion."""
    from docqa.filters import FilterError, doc_filter
    from docqa.kb import KnowledgeBase
    from docqa.search import search as run_search

    if not query.strip():
        raise click.UsageError("the query is empty")
    try:
        flt = doc_filter(None if groups is None else [g for g in groups.split(",") if g.strip()],
                         json.loads(where) if where else None)
    except (json.JSONDecodeError, FilterError) as e:
        raise click.BadParameter(str(e), param_hint="--filter") from None
    hits = run_search(KnowledgeBase.open(kb, load_settings()), query, k, mode=mode, where=flt)
    if as_json:
        _echo_json([h.public(server_paths=True) for h in hits])
        return
    for i, h in enumerate(hits, 1):
        where = h.label or " > ".join(h.heading_path) or h.title
        click.echo(f"[{i}] {h.score:.4f}  {where}  ({h.source})\n    {h.text[:300]}")


@click.command()
@kb_option
@click.option("--embed-model", default=None, help="Re-embed with this model (HF id or local dir).")
@click.option("--chunker", default=None, type=click.Choice(["fixed", "embedding", "nsp"]),
              help="Re-chunk with this chunker.")
@click.option("--nsp-model", default=None, help="NSP boundary model (dir from `docqa finetune nsp`, or HF id).")
@click.option("--embed", "embed", default=None, type=click.Choice(["keyinfo", "text", "both"]),
              help="What is embedded per unit: key info, original text, or both.")
@click.option("--chunk-max-tokens", default=None, type=int)
@click.option("--no-progress", is_flag=True)
def reindex(kb: str, embed_model: str | None, chunker: str | None, nsp_model: str | None, embed: str | None,
            chunk_max_tokens: int | None, no_progress: bool) -> None:
    """Rebuild all units from the stored source text, optionally with new models or chunker."""
    from ingest.pipeline import reindex as run_reindex

    build = {k: v for k, v in {"embed_model": embed_model, "chunker": chunker, "nsp_model": nsp_model,
                               "embed": embed, "chunk_max_tokens": chunk_max_tokens}.items() if v is not None}
    with _rolled_back_on_interrupt(kb):
        r = run_reindex(kb, load_settings(), build, progress=not no_progress and sys.stderr.isatty())
    click.echo(f"{kb}: reindexed {r.updated} documents into {r.units} units in {r.seconds:.1f}s")


@click.command()
@kb_option
def compact(kb: str) -> None:
    """Merge the KB's segments into one, dropping the rows of replaced and deleted documents.

    Commits write only what they change, as a new segment; docqa merges small segments by itself as
    they pile up. Compacting by hand is for after a large deletion, or before publishing a KB to
    read-only replicas (one segment: the least memory and the fastest start-up)."""
    from docqa.kb import KBWriter

    settings = load_settings()
    with _rolled_back_on_interrupt(kb), KBWriter(kb, settings, create=False) as writer:
        before = len(writer.segments)
        writer.compact()
        counts = writer.commit()
        generation = writer.generation
    click.echo(f"{kb}: {before} segment(s) merged into one at generation {generation}: {counts['docs']} documents, "
               f"{counts['units']} units")


@click.command()
@json_option
def kbs(as_json: bool) -> None:
    """List the knowledge bases under DOCQA_HOME."""
    from docqa.kb import KnowledgeBase, list_kbs

    settings = load_settings()
    infos = []
    for name in list_kbs(settings):
        try:
            infos.append({**KnowledgeBase.open(name, settings).info(), "status": "ok"})
        except Exception as e:  # one broken KB must not hide the others
            infos.append({"name": name, "status": "broken", "error": str(e)})
    if as_json:
        _echo_json(infos)
        return
    for i in infos:
        c = i.get("counts", {})
        click.echo(f"{i['name']}: {c.get('docs', '?')} documents, {c.get('units', '?')} units"
                   + (f"  BROKEN: {i['error']}" if "error" in i else ""))


@click.command()
@kb_option
@click.option("--apply", "apply_", is_flag=True, help="Rewrite the manifest (default: a dry run that only reports).")
@json_option
def repair(kb: str, apply_: bool, as_json: bool) -> None:
    """Find the newest complete generation of a damaged KB and make it current again.

    Checks the manifest and every generation on disk (store integrity, one vector and one keyword
    entry per unit). A dry run by default; --apply rewrites the manifest. Exit status: 0 healthy or
    repaired, 1 a repair is needed (dry run), 2 no complete generation is left.
    """
    from docqa.kb.repair import apply_repair, plan_repair

    settings = load_settings()
    plan = plan_repair(kb, settings)
    out = plan.to_dict()
    if apply_ and plan.needed and plan.chosen is not None:
        apply_repair(plan, settings)
        out["applied"] = True
    if as_json:
        _echo_json(out)
    else:
        _echo_repair(plan, applied=out.get("applied", False))
    if plan.chosen is None:
        sys.exit(2)
    if plan.needed and not out.get("applied"):
        sys.exit(1)


def _echo_repair(plan, *, applied: bool) -> None:
    click.echo(f"{plan.name}: manifest " + (f"BROKEN: {plan.manifest_problem}" if plan.manifest_problem
                                             else f"names generation {plan.named}"))
    for c in plan.checks:
        counts = f"{c.counts.get('docs', '?')} documents, {c.counts.get('units', '?')} units"
        click.echo(f"  generation {c.generation}: " + ("complete, " + counts if c.ok else "DAMAGED: "
                                                         + "; ".join(c.problems)))
    if not plan.checks:
        click.echo("  no generation on disk")
    for note in plan.notes:
        click.echo(f"  note: {note}")
    if plan.chosen is None:
        click.echo(f"{plan.name}: no complete generation on disk; nothing can be restored", err=True)
    elif not plan.needed:
        click.echo(f"{plan.name}: healthy, nothing to repair")
    elif applied:
        click.echo(f"{plan.name}: repaired: the manifest now names generation {plan.chosen.generation}")
    else:
        click.echo(f"{plan.name}: would make generation {plan.chosen.generation} current; run again with --apply")


COMMANDS = [ingest, delete, docs, search, reindex, compact, kbs, repair]
