"""sessionkit's benchmark suite: ``python -m benchmarks [PART ...] [--quick | --smoke] ...``
(see benchmarks/README.md). The machines are shared and noisy: only ratios measured in the same
run mean anything."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from benchmarks import e2e, push, redis_store, sessions
from benchmarks import harness as h

PARTS = {"sessions": sessions.run, "redis": redis_store.run, "push": push.run, "e2e": e2e.run}
#: The open issue's rows ("Speed where users feel it"), in its order: the run ends with them.
ROWS = [t for t in (*e2e.TARGETS, *push.TARGETS, *sessions.TARGETS) if t.row]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=", ".join(PARTS))
    parser.add_argument("--quick", dest="mode", action="store_const", const="quick", default="full")
    parser.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    parser.add_argument("--rounds", type=int, help="rounds per side (default 3, or 1 if short)")
    sizes = lambda text: tuple(int(x) for x in text.split(","))  # noqa: E731
    parser.add_argument("--sizes", type=sizes, help="live sessions (part sessions)")
    parser.add_argument("--sockets", type=sizes, help="sockets (part push)")
    parser.add_argument("--sides", help="only these sides, comma-separated (part e2e)")
    parser.add_argument("--no-seed", action="store_true", help="measure sessionkit only")
    parser.add_argument("--json", type=Path, help="where to write the results (and .md)")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.mode == "full" else 1)
    if set(args.parts) - set(PARTS):
        parser.error(f"the parts are {', '.join(PARTS)}")
    started = time.perf_counter()
    no_seed = "not asked for (--no-seed)" if args.no_seed else h.npm(h.SEED_DIR, [h.SEED_PACKAGE])
    h.say(f"seed: {no_seed or h.SEED_PACKAGE}; {args.mode} run, {args.rounds} round(s)")
    reports = []
    for part in args.parts or PARTS:
        h.say(f"\n== {part}")
        try:
            reports.append(PARTS[part](args, no_seed))
        except Exception as exc:  # one part failing must not lose the others' figures
            reports.append(h.Report(part, why=f"failed: {exc!r}"[-2000:]))
        if reports[-1].why:
            h.say(f"{part} figures not measured: {reports[-1].why}")
    h.say((summary := h.summary(reports, ROWS)).text())
    command, info = " ".join(["python -m benchmarks", *sys.argv[1:]]), h.machine()
    name = time.strftime("bench-%Y%m%dT%H%M%SZ.json", time.gmtime())
    path = args.json or h.HERE / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    found = [dataclasses.asdict(r) for r in reports]
    path.write_text(json.dumps({"command": command, "machine": info, "parts": found}, default=str))
    md = [f"`{command}`: {args.rounds} round(s), medians; {info}"]
    md += [f"\n## {r.part}\n\n{r.why}" + "\n".join(t.markdown() for t in r.tables) for r in reports]
    md.append("\n## summary\n\n" + summary.markdown())
    path.with_suffix(".md").write_text("\n".join(md))
    h.say(f"\nresults written to {path} and .md ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
