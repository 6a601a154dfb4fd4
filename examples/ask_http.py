#!/usr/bin/env python3
"""Ask a running `docqa serve` questions over HTTP (standard library only).

    python examples/ask_http.py "试用期最长多久？" "How many days of annual leave?" \
        --url http://127.0.0.1:8765 --kb sample

Prints each question, the answer and its citations as ``[n] title — first 80 characters``.
Exit status: 0 when every question got an answer; 1 when the server could not be reached or
answered with an error; 2 when an answer is missing (empty, or the service refused to answer;
``--allow-refusal`` accepts refusals).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def ask(url: str, question: str, kb: str | None, timeout: float) -> dict:
    body = {"question": question}
    if kb:
        body["kb"] = kb
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/chat",
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def one_line(text: str, n: int = 80) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= n else flat[:n] + "…"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("questions", nargs="+", metavar="QUESTION")
    ap.add_argument("--url", default="http://127.0.0.1:8765", help="base URL of docqa serve (default: %(default)s)")
    ap.add_argument("--kb", default=None, help="knowledge base to ask (default: the server's)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
    ap.add_argument("--allow-refusal", action="store_true", help="a refusal counts as an answer")
    args = ap.parse_args(argv)

    status = 0
    for q in args.questions:
        print(f"Q: {q}")
        try:
            data = ask(args.url, q, args.kb, args.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:500]
            print(f"error: HTTP {e.code} from {args.url}: {detail}", file=sys.stderr)
            return 1
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            print(f"error: cannot reach {args.url}: {getattr(e, 'reason', e)}", file=sys.stderr)
            return 1
        except json.JSONDecodeError as e:
            print(f"error: the server's reply is not JSON: {e}", file=sys.stderr)
            return 1

        answer = (data.get("answer") or "").strip()
        refused = bool(data.get("refused"))
        print(f"A: {answer or '(no answer)'}" + ("  [refused]" if refused else ""))
        for c in data.get("citations") or []:
            title = c.get("label") or c.get("title") or c.get("source") or c.get("doc_id") or "?"
            print(f"  [{c.get('n', '?')}] {title} — {one_line(c.get('text', ''))}")
        print()
        if not answer:
            print(f"error: no answer to {q!r}", file=sys.stderr)
            status = 2
        elif refused and not args.allow_refusal:
            print(f"error: the service refused to answer {q!r}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
