"""Run every benchmark, print one table, write bench/results/latest.json (one named figure per key).

Each module `bench/bench_<name>.py` defines `run() -> dict[str, float | str]`; keys are prefixed with
`<name>.`. `python -m bench NAME ...` runs only the named ones.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if argv:
        names = [n for n in names if n in argv]
    results: dict[str, object] = {"machine": f"{platform.machine()} {platform.processor()}".strip(),
                                  "python": platform.python_version()}
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        t0 = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.bench_{name}").run()
        except Exception:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            failed.append(name)
            continue
        for key, value in figures.items():
            results[f"{name}.{key}"] = value
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    width = max((len(k) for k in results), default=10)
    print("\n" + "figure".ljust(width) + "  value")
    for key, value in results.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(key.ljust(width) + "  " + shown)
    out = HERE / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    if failed:
        print(f"failed benchmarks: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
