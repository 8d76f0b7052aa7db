"""Benchmark: probing videos one by one with ffprobe vs `probe_many` on a pool of threads.

Links N video files (symlinks to the shared sample videos, under distinct names) into a temporary
folder, then probes them all:
  - baseline: a plain loop over `ffmpeg.probe` (ffmpeg-python), one file after the other;
  - `probe_many` with workers = 1, 2 and 4 (each probe also hashes the file and checks its codec).
Prints files/s and the speed-up over the baseline measured in the same run.

    .venv/bin/python benchmarks/probe.py            # 200 files
    .venv/bin/python benchmarks/probe.py -n 500 --workers 1 2 4 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ffmpeg

from curate.probe import MediaInfo, decodable_video_codecs, probe_many

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))


def link_videos(data: Path, folder: Path, n: int) -> list[Path]:
    """N symlinks in `folder`, cycling over the shared videos."""
    sources = sorted(p for p in (data / "videos").rglob("*") if p.suffix in (".mp4", ".avi"))
    if not sources:
        raise SystemExit(
            f"no videos under {data / 'videos'}; pass --data or set CURATE_SHARED_DATA"
        )
    links = []
    for i in range(n):
        src = sources[i % len(sources)]
        link = folder / f"v{i:05d}{src.suffix}"
        link.symlink_to(src)
        links.append(link)
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="number of video files (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--verify-decode", action="store_true", help="also decode every video")
    args = parser.parse_args()

    decodable_video_codecs()  # one-off `ffprobe -codecs`, not part of any timing
    with tempfile.TemporaryDirectory(prefix="curate-probe-bench-") as tmp:
        files = link_videos(args.data, Path(tmp), args.n)
        print(
            f"{len(files)} video files, {os.cpu_count()} CPUs, verify_decode={args.verify_decode}"
        )

        started = time.perf_counter()
        for f in files:
            ffmpeg.probe(str(f))
        baseline = len(files) / (time.perf_counter() - started)
        print(f"{'sequential ffmpeg.probe':<28} {baseline:8.1f} files/s   1.00x")

        for workers in args.workers:
            started = time.perf_counter()
            results = probe_many(
                [(f, "video") for f in files], workers=workers, verify_decode=args.verify_decode
            )
            rate = len(files) / (time.perf_counter() - started)
            bad = sum(not isinstance(r, MediaInfo) for r in results.values())
            label = f"probe_many(workers={workers})"
            print(f"{label:<28} {rate:8.1f} files/s   {rate / baseline:.2f}x   failures={bad}")


if __name__ == "__main__":
    main()
