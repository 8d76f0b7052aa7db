"""Ingest throughput and memory against a bare DuckDB copy of the same file.

Generates a CC3M-style headerless TSV (caption<TAB>url) and, in one run, times:
  * baseline: DuckDB `COPY (SELECT * FROM read_csv(...)) TO 'x.parquet'` of the file;
  * curate:   `curate ingest FILE --format cc3m` (the library call, in a fresh process);
and reports the ratio (target <= 1.5x) and the peak memory (max RSS) of the ingest at each size
(target: flat, i.e. bounded by the batch size rather than the file size).

    .venv/bin/python benchmarks/ingest.py                  # 1M rows, memory at 1M and 5M
    .venv/bin/python benchmarks/ingest.py --rows 200000 --memory-rows 200000,1000000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = [
    "actor",
    "person",
    "football",
    "player",
    "city",
    "street",
    "dog",
    "cat",
    "beach",
    "sunset",
    "mountain",
    "car",
    "house",
    "tree",
    "woman",
    "man",
    "child",
    "smiling",
    "running",
    "portrait",
    "view",
    "old",
    "new",
    "red",
    "blue",
    "green",
    "yellow",
    "wooden",
    "stone",
    "river",
    "bridge",
    "night",
    "day",
    "snow",
    "rain",
    "sky",
    "cloud",
    "flower",
    "garden",
    "food",
    "plate",
    "table",
]


def make_tsv(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            caption = " ".join(rng.choices(WORDS, k=rng.randint(4, 16)))
            if i % 1000 == 7:
                caption = caption.replace("old", "donâ€™t")  # a little real-world mojibake
            out.write(f"{caption}\thttps://cdn.example.org/img/{i:08d}.jpg?w=640\n")


def run_child(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints JSON; we add its wall time and max RSS."""
    wrapper = (
        "import json, resource, time\n"
        "t0 = time.perf_counter()\n"
        f"{code}\n"
        "out = {'seconds': time.perf_counter() - t0,"
        " 'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def duckdb_copy(tsv: Path, out: Path) -> dict:
    return run_child(
        "import duckdb\n"
        f"duckdb.sql(\"COPY (SELECT * FROM read_csv('{tsv}', delim='\\t', header=false, quote='', "
        f"escape='', columns={{'caption': 'VARCHAR', 'url': 'VARCHAR'}})) TO '{out}' (FORMAT parquet)\")"
    )


def curate_ingest(tsv: Path, workspace: Path) -> dict:
    return run_child(
        "from pathlib import Path\n"
        "from curate.ingest import IngestOptions, ingest\n"
        "from curate.workspace import Workspace\n"
        f"r = ingest(Path('{tsv}'), IngestOptions(name='bench', format='cc3m'),"
        f" Workspace.resolve('{workspace}'))\n"
        "assert r.stats['read'] == r.stats['accepted'] + r.stats['rejected']"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", default="1000000,5000000")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs; the best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        tsv = tmpdir / "cc3m.tsv"
        make_tsv(tsv, args.rows)
        size_mb = tsv.stat().st_size / 1e6
        base = min(
            (duckdb_copy(tsv, tmpdir / f"copy{i}.parquet") for i in range(args.repeat)),
            key=lambda r: r["seconds"],
        )
        ours = min(
            (curate_ingest(tsv, tmpdir / f"ws{i}") for i in range(args.repeat)),
            key=lambda r: r["seconds"],
        )
        print(f"input: {args.rows:,} rows, {size_mb:.0f} MB")
        print(f"duckdb COPY read_csv -> parquet: {base['seconds']:.2f} s")
        print(f"curate ingest (cc3m):             {ours['seconds']:.2f} s "
              f"({args.rows / ours['seconds']:,.0f} rows/s)")  # fmt: skip
        print(f"ratio curate / duckdb: {ours['seconds'] / base['seconds']:.2f}x (target <= 1.5x)")

        print("peak memory (max RSS) of the ingest process:")
        for rows in [int(r) for r in args.memory_rows.split(",") if r]:
            path = tmpdir / f"mem{rows}.tsv"
            make_tsv(path, rows, seed=1)
            result = curate_ingest(path, tmpdir / f"mem-ws{rows}")
            print(f"  {rows:>10,} rows: {result['max_rss_mb']:.0f} MB ({result['seconds']:.1f} s)")
            path.unlink()


if __name__ == "__main__":
    main()
