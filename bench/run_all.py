"""Run benchmark scripts one after another and print their Markdown output.

Usage: ``python bench/run_all.py [script.py ...]``; without arguments every ``bench/*.py`` that runs as
``__main__`` (not the parts others import) except this one and the tools in ``NOT_BENCHMARKS``, in name order.
Each script is a plain ``python bench/x.py`` runnable printing Markdown.
Exit status: 0 if every script succeeded, else 1 (the others still run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# runnable scripts that are tools, not benchmarks: clinical_copy.py writes resampled data and needs an output folder
NOT_BENCHMARKS = {"clinical_copy.py"}


def runnable(path: Path) -> bool:
    """Whether ``path`` is a benchmark of its own (it runs as ``__main__``), not a part another one imports."""
    return (
        not path.name.startswith("_")
        and path.name not in NOT_BENCHMARKS
        and 'if __name__ == "__main__":' in path.read_text()
    )


def scripts(names: list[str]) -> list[Path]:
    """The scripts to run: the named ones (a path, or a name inside bench/), or all of bench/*.py."""
    if not names:
        return sorted(p for p in BENCH_DIR.glob("*.py") if p.name != Path(__file__).name and runnable(p))
    found = []
    for name in names:
        path = Path(name) if Path(name).is_file() else BENCH_DIR / Path(name).name
        if not path.is_file():
            raise SystemExit(f"run_all: error: benchmark script {name!r} does not exist.")
        found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    failed = []
    for script in scripts(sys.argv[1:] if argv is None else argv):
        print(f"\n## {script.name}\n", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=BENCH_DIR.parent)
        elapsed = time.perf_counter() - start
        print(
            f"\n_{script.name}: {'ok' if result.returncode == 0 else f'FAILED (exit {result.returncode})'} "
            f"in {elapsed:.1f} s_",
            flush=True,
        )
        if result.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
