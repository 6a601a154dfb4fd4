"""Load: many clients asking /v1/chat at once, on a KB of more than 20k units, with and without an upload
being ingested at the same time; throughput, latency percentiles, errors, and the server's memory.

The server is a real ``docqa serve`` subprocess (extractive answers: no LLM, so the figures are the
service's own cost); the clients are asyncio tasks in this process, each sending its next question as
soon as the last one is answered (closed loop). Questions are real CMRC/DRCD/CAIL questions, drawn
without replacement across the phases (``Questions``).

Phases, one server, one run:

1. ``cold``: ``--clients`` clients for ``--seconds`` right after start (caches empty, the server's
   evidence warm-up running beside them at low priority); then the bench waits, without load, until
   ``/readyz`` says the warm-up has finished;
2. ``warm``: the steady state of a served KB;
3. ``warm + upload``: the same while a document is uploaded over HTTP and ingested by the server's
   background job: no request may fail, and the KB's document count must step from n to n+1 once;
4. ``warm again``: to see whether memory keeps growing once caches are full.

The machine is shared, so besides requests/s and latency (wall clock, noisy) the report gives the
server's CPU-seconds per request (``/proc/<pid>/stat``), which does not depend on what else runs,
and the load average during each phase.

Usage::

    python bench/load.py --passages 1800 --clients 16 --seconds 60 --out bench/reports/load.md
    python bench/load.py --reader --out bench/reports/load_reader.md   # the same with the reader answering
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPORTS, Dataset, load_squad, machine_line, md_table, percentiles, write_report  # noqa: E402

KB = "load"
TARGET_RPS, TARGET_P95_MS = 40.0, 500.0
COLD_RPS, COLD_P95_RATIO = 30.0, 1.5  # #24: the first minute after a start
READER_RPS = 25.0  # #27: warm, with the reader on


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(home: Path, n_passages: int) -> tuple[dict, list[str]]:
    """The KB (reused when ``home`` already holds it) and the questions to ask."""
    from bench.common import Passage, bench_settings, build_kb, iter_cail_cases

    passages, questions = [], []
    for ds in (Dataset.CMRC, Dataset.DRCD):
        p, q = load_squad(ds)
        passages += p
        questions += [x.text for x in q]
    for i, name, text, qas in iter_cail_cases(max(0, n_passages - len(passages))):  # court judgments
        passages.append(Passage(f"cail-{i}", name, text))
        questions += [qa["question"].strip() for qa in qas if qa.get("question", "").strip()]
    passages = passages[:n_passages]
    manifest = home / KB / "manifest.json"
    if manifest.is_file():
        counts = json.loads(manifest.read_text())["counts"]
        print(f"reusing {home / KB}: {counts}", file=sys.stderr)
        return counts, questions
    if KB != "load":
        raise SystemExit(f"no KB {KB!r} in {home}: bench/load.py builds only its own (`load`)")
    os.environ["DOCQA_HOME"] = str(home)
    t0 = time.perf_counter()
    kb, report = build_kb(passages, KB, bench_settings(home=home, keyphrases=0), progress=sys.stderr.isatty())
    kb.close()
    print(f"built {report.units} units from {len(passages)} passages in {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)
    return json.loads(manifest.read_text())["counts"], questions


SERVER_SETTINGS: dict[str, str] = {}  # --reader, --setting: DOCQA_* settings every server of the run starts with


class Server:
    def __init__(self, home: Path, kb: str = KB):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
        env.update(DOCQA_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **SERVER_SETTINGS)
        self.log = open(home / "serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--kb", kb, "--port",
                                      str(self.port), "--log-level", "info"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=home)

    def wait_ready(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docqa serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("docqa serve not ready")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Questions:
    """The questions of a run, in a shuffled order drawn without replacement across its phases (a new
    shuffle when all were asked): the first phases ask only questions the server has not seen, so
    `cold` and `warm` compare a restart, not unseen questions with repeats that hit the server's caches
    (query vectors, claim pieces, redactions). ``repeats``: how many draws had been asked before."""

    def __init__(self, questions: list[str], seed: int):
        self.pool = list(dict.fromkeys(q for q in questions if q.strip()))  # the sets hold two empty ones (a 422)
        self.rng = random.Random(seed)
        self.order: list[str] = []
        self.asked: set[str] = set()
        self.repeats = self.draws = 0

    def next(self) -> str:
        if not self.order:
            self.order = self.rng.sample(self.pool, len(self.pool))
        q = self.order.pop()
        self.draws += 1
        self.repeats += q in self.asked
        self.asked.add(q)
        return q


async def _clients(url: str, questions: Questions, clients: int, seconds: float, during=None) -> dict:
    import httpx

    records: list[tuple[float, float, int]] = []  # (start offset s, latency ms, status)
    errors: list[str] = []
    t_start = time.perf_counter()
    stop_at = t_start + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            q = questions.next()
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/chat", json={"question": q})
                status = r.status_code
                if status != 200:
                    errors.append(f"{status}: {r.text[:200]}")
            except httpx.HTTPError as e:
                status = 0
                errors.append(f"{type(e).__name__}: {e}")
            records.append((t0 - t_start, (time.perf_counter() - t0) * 1000, status))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(clients)]
        side = asyncio.create_task(during(client)) if during else None
        await asyncio.gather(*tasks)
        side_result = await side if side else None
    wall = time.perf_counter() - t_start
    ok = [ms for _, ms, st in records if st == 200]
    return {"records": records, "errors": errors, "wall": wall, "requests": len(records), "ok": len(ok),
            "rps": len(ok) / wall, **{f"p{p}": v for p, v in percentiles(ok).items()}, "side": side_result}


def _upload(doc: Path):
    """The side task of phase 2: upload ``doc``, poll its job, watch the document count step."""

    async def run(client) -> dict:
        await asyncio.sleep(5)
        before = (await client.get(f"/v1/kbs/{KB}/documents?limit=1")).json()["total"]
        t0 = time.perf_counter()
        r = await client.post(f"/v1/kbs/{KB}/documents", files=[("files", (doc.name, doc.read_bytes()))])
        if r.status_code != 202:
            return {"error": f"upload answered {r.status_code}: {r.text[:200]}"}
        seen_totals = [before]
        while True:
            job = (await client.get(r.json()["url"])).json()
            total = (await client.get(f"/v1/kbs/{KB}/documents?limit=1")).json()["total"]
            if total != seen_totals[-1]:
                seen_totals.append(total)
            if job["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.5)
        total = (await client.get(f"/v1/kbs/{KB}/documents?limit=1")).json()["total"]
        if total != seen_totals[-1]:
            seen_totals.append(total)
        return {"status": job["status"], "error": job.get("error"), "seconds": time.perf_counter() - t0,
                "units": (job.get("result") or {}).get("units"), "totals": seen_totals}

    return run


def wait_warm(server: Server, timeout: float = 1800) -> float:
    """Seconds until /readyz says the evidence cache warm-up has finished (no load meanwhile)."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        ev = httpx.get(f"{server.url}/readyz", timeout=10).json().get("evidence_cache", {}).get(KB, {})
        if ev and ev["encoded"] >= ev["total"]:
            break
        if not ev and time.perf_counter() - t0 > 10:  # no warm-up runs (the reader answers without sentence vectors)
            break
        time.sleep(2)
    return time.perf_counter() - t0


def legacy_cold(home: Path, tmp: Path, questions: Questions, args) -> dict:
    """The same KB as docqa stored it before #24 (no evidence vectors: answers embed passage sentences
    as they come, a background warm-up fills a cache), its first minute after a start: the old figure
    measured in the same run. A hard-linked copy of the KB without its ``evidence`` folders."""
    import shutil

    legacy = tmp / "legacy-home"
    subprocess.run(["cp", "-al", str(home), str(legacy)], check=True)
    for folder in (legacy / KB).glob("gen-*/evidence"):
        shutil.rmtree(folder)
    (legacy / "serve.log").unlink(missing_ok=True)  # a link to the first server's log: start a new file
    server = Server(legacy, KB)
    try:
        server.wait_ready()
        return phase(server, "cold, before #24 (evidence not stored)", questions, args)
    finally:
        server.stop()


def phase(server: Server, name: str, questions: Questions, args, during=None) -> dict:
    cpu0, rss0, load0 = server.cpu_seconds(), server.rss_mb(), os.getloadavg()[0]
    draws0, repeats0 = questions.draws, questions.repeats
    out = asyncio.run(_clients(server.url, questions, args.clients, args.seconds, during))
    cpu = server.cpu_seconds() - cpu0
    out.update(name=name, rss_before=rss0, rss_after=server.rss_mb(), load=max(load0, os.getloadavg()[0]),
               cpu_per_request_ms=1000 * cpu / max(1, out["requests"]), server_cpu=cpu,
               repeats=(questions.repeats - repeats0) / max(1, questions.draws - draws0))
    print(f"{name}: {out['rps']:.1f} req/s, p50 {out['p50']:.0f} ms, p95 {out['p95']:.0f} ms, "
          f"{len(out['errors'])} errors, server {out['cpu_per_request_ms']:.1f} CPU-ms/request, "
          f"{100 * out['repeats']:.0f}% asked before, RSS {rss0:.0f} -> {out['rss_after']:.0f} MB", file=sys.stderr)
    return out


def plot(phases: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ph in phases:
        t = [r[0] for r in ph["records"] if r[2] == 200]
        ms = [r[1] for r in ph["records"] if r[2] == 200]
        axes[0].scatter(t, ms, s=3, alpha=0.4, label=ph["name"])
        axes[1].hist(ms, bins=60, histtype="step", label=ph["name"])
    axes[0].set(xlabel="seconds into the phase", ylabel="latency (ms)", title="/v1/chat latency over time")
    axes[1].set(xlabel="latency (ms)", ylabel="requests", title="latency distribution")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    global KB  # --kb: the phases, the server and the upload all address this KB
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passages", type=int, default=1800,
                    help="passages in the KB: CMRC + DRCD (1256), then CAIL2019 judgments (~14 units each)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--home", type=Path, default=None, help="reuse (or build once) the KB in this folder")
    ap.add_argument("--kb", default=KB, help="the KB to load (an existing one in --home, e.g. bench/kb_size.py "
                                             "--evidence's `big`; built only when it is the default)")
    ap.add_argument("--reader", action="store_true", help="the servers answer with the reader on (its default "
                    "window budget; #27's aim: >= 25 requests/s warm)")
    ap.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a docqa setting every server starts with (DOCQA_KEY=VALUE), e.g. reader_windows_first=1")
    ap.add_argument("--out", type=Path, default=REPORTS / "load.md")
    args = ap.parse_args(argv)
    KB = args.kb
    if args.reader:
        SERVER_SETTINGS["DOCQA_READER"] = "true"
    for kv in args.setting:
        key, sep, value = kv.partition("=")
        if not sep or not key.strip():
            ap.error(f"--setting {kv!r}: expected KEY=VALUE")
        SERVER_SETTINGS[f"DOCQA_{key.strip().upper()}"] = value
    with tempfile.TemporaryDirectory(prefix="docqa-load-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        counts, pool = build(home, args.passages)
        questions = Questions(pool, args.clients)
        counts = {**counts, "questions": len(questions.pool)}
        run = time.strftime("%Y%m%d%H%M%S")  # a new name and new bytes every run: the same name would replace
        doc = Path(tmp) / f"load-upload-{run}.md"  # the earlier upload (count unchanged), the same bytes be a no-op
        rules = "\n\n".join(f"第{i}条 编号 UP-{run}-{i:04d} 的设备每周检查一次。" for i in range(200))
        doc.write_text(f"# 上传测试\n\n{rules}\n", encoding="utf-8")
        server = Server(home, KB)
        try:
            server.wait_ready()
            phases = [phase(server, "cold", questions, args)]
            waited = wait_warm(server)
            phases += [phase(server, "warm", questions, args),
                      phase(server, "warm + upload", questions, args, during=_upload(doc)),
                      phase(server, "warm again", questions, args)]
        finally:
            server.stop()
        phases.append(legacy_cold(home, Path(tmp), Questions(pool, args.clients), args))  # a new server: all unseen
        warm = [json.loads(line)["msg"] for line in (home / "serve.log").read_text(errors="replace").splitlines()
                if line.startswith("{") and "evidence sentences encoded" in line]
    report(phases, counts, args, (warm[-1] if warm else "not finished during the run")
           + f"; the bench waited {waited:.0f} s after the cold phase for it to finish")
    return 0


def report(phases: list[dict], counts: dict, args, warm: str) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    plot(phases, png)
    rows = [[p["name"], p["requests"], len(p["errors"]), round(p["rps"], 1), round(p["p50"]), round(p["p95"]),
             round(p["p99"]), round(p["cpu_per_request_ms"], 1), round(p["load"], 1), round(p["rss_before"]),
             round(p["rss_after"]), f"{100 * p['repeats']:.0f}%"] for p in phases]
    first = phases[1]  # warm: the steady state of a served KB
    side = phases[2]["side"] or {}
    side_line = (f"{side.get('status')} in {side.get('seconds', 0):.1f} s, {side.get('units')} units; document "
                 f"count seen {side.get('totals')} (steps once from n to n+1: readers never saw a half-committed KB)"
                 if "status" in side else f"did not run: {side.get('error')}")
    target = READER_RPS if args.reader else TARGET_RPS
    met_rps = "met" if first["rps"] >= target else "not met"
    cold, old = phases[0], phases[-1]
    ratio = cold["p95"] / max(1e-9, first["p95"])
    verdict = (f"**warm: {first['rps']:.1f} requests/s (aim >= {target:g}): {met_rps}; "
               f"p95 {first['p95']:.0f} ms (aim <= {TARGET_P95_MS:g}): "
               f"{'met' if first['p95'] <= TARGET_P95_MS else 'not met'}**\n\n"
               f"**first minute after a start: {cold['rps']:.1f} requests/s (aim >= {COLD_RPS:g}: "
               f"{'met' if cold['rps'] >= COLD_RPS else 'not met'}; before #24, same run: {old['rps']:.1f}), "
               f"p95 {cold['p95']:.0f} ms = {ratio:.2f}x the warm p95 (aim <= {COLD_P95_RATIO:g}x: "
               f"{'met' if ratio <= COLD_P95_RATIO else 'not met'}; before #24: {old['p95']:.0f} ms)**")
    how = ("reader on" if args.reader else "extractive") + "".join(f", `{k}={v}`" for k, v in SERVER_SETTINGS.items()
                                                                    if k != "DOCQA_READER")
    title = f"Load: {args.clients} clients on /v1/chat ({how}) over a {counts.get('units')}-unit KB"
    lines = [machine_line(), "", verdict, "",
             md_table(["phase", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "server CPU-ms/req",
                       "load avg", "RSS before MB", "RSS after MB", "asked before"], rows), "",
             (f"- KB: {counts.get('docs')} documents, {counts.get('units')} units (CMRC 2018 trial + DRCD dev "
              f"passages, then CAIL2019 dev judgments; all unit levels, keyphrases off to keep the build short)."
              if KB == "load" else
              f"- KB: `{KB}` in {args.home}, {counts.get('docs')} documents, {counts.get('units')} units, as "
              "`bench/kb_size.py --evidence` builds it: the load KB's documents copied (**marked copies, not new "
              "text**) with their vectors and stored evidence vectors; answers over copies read fewer distinct "
              "passages than over real text."),
             f"- Clients: {args.clients} closed-loop asyncio clients in the bench process (they share the 2 cores "
             f"with the server), {args.seconds:g} s per phase, real questions ({counts.get('questions')} distinct) "
             "drawn without replacement across the phases, so `cold` and `warm` both ask questions the server has "
             "not seen (the last column: the share asked before; a repeat hits the server's caches and costs less).",
             "- Phases: `cold` is the first minute after start. Since #24 ingestion stores the vectors of every "
             "segment's evidence sentences in the generation (`docqa/kb/evidence.py`, memory-mapped), so an "
             "answer embeds only its question and `cold` should cost what `warm` does. The last phase is the "
             "same KB without them (a hard-linked copy with the `evidence` folders removed: a KB ingested "
             "before #24), whose answers embed each passage's sentences the first time it is retrieved while a "
             f"low-priority background thread (`warm_evidence`) fills the embedder's cache: {warm}.",
             f"- Upload during phase 3: {side_line}.",
             "- Errors: " + ("none" if not any(p["errors"] for p in phases) else
                             "; ".join(sorted({e for p in phases for e in p["errors"]})[:5])),
             "", f"![latency]({png.name})", ""]
    write_report(args.out, title, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
