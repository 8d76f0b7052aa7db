"""Benchmark of `curate score`'s signals: CLIP-scoring throughput and the near-duplicate pass.

Run by hand (HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/signals.py [--quick] [--device cuda]):

1. CLIP scoring, items per second, for the tiny random model and for ViT-B-32 with random
   weights, on real COCO photos and captions: the scorer's core (threaded image loading and
   preprocessing, batched forward passes) and the whole `score_manifest` (plus reading the
   manifest and writing chunked sidecars). The baseline, measured in the same run, is the plain
   loop one writes first: open an image, preprocess it, encode it and its caption, one at a time.
2. The near-duplicate pass on random unit embeddings with planted near-copies: blockwise cosine
   pairs + connected components, time and peak memory (tracemalloc, which sees numpy buffers),
   and the recall of the planted pairs. Baseline: the dense n × n similarity matrix, on the
   largest size where it still fits comfortably.
3. pHash near-duplicates with multi-index hashing against the blockwise brute force.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate.signals import neardup  # noqa: E402

SHARED = Path(os.environ.get("CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))


def _manifest(workspace, images: list[Path], count: int):
    sys.path.insert(0, str(REPO / "tests"))
    from tests.curate.signals.conftest import pair, write_manifest

    rows = [
        pair(
            f"row-{i:06d}", query_text=f"a photo of scene {i}", target_image=images[i % len(images)]
        )
        for i in range(count)
    ]
    return write_manifest(workspace, "bench", rows)


def bench_clip(model: str, count: int, baseline_count: int, device: str, batch: int) -> dict:
    """Items/s: one-at-a-time baseline, batched (threads + batches), whole `score_manifest`."""
    import torch
    from PIL import Image

    from curate.signals.clip import ClipItem, ClipOptions, load_clip, score_items
    from curate.signals.media import bounded_map, load_image

    images = sorted((SHARED / "images/coco_val2017_subset/val2017").glob("*.jpg"))
    options = ClipOptions(model=model, pretrained=None, device=device, batch_size=batch)
    clip = load_clip(options)  # built once; every measurement reuses it

    def sync() -> None:
        if clip.device.startswith("cuda"):
            torch.cuda.synchronize()

    # Warm-up (kernels, allocator) outside the timings.
    score_items(clip, [ClipItem(clip.pixels([Image.open(images[0]).convert("RGB")]), "warm")] * 2)
    sync()

    # Baseline: one pair at a time, no threads, no batching.
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(baseline_count):
            image = Image.open(images[i % len(images)]).convert("RGB")
            pixels = clip.preprocess(image)[None].to(clip.device)
            tokens = clip.tokenizer([f"a photo of scene {i}"]).to(clip.device)
            with clip._autocast():
                a = torch.nn.functional.normalize(clip.model.encode_image(pixels).float(), dim=-1)
                b = torch.nn.functional.normalize(clip.model.encode_text(tokens).float(), dim=-1)
            float((a * b).sum())
    sync()
    baseline = baseline_count / (time.perf_counter() - start)

    # Batched: the scorer's core (threaded load + preprocess, batched forward), no Parquet.
    workers = min(8, os.cpu_count() or 1)

    def prepare(i: int) -> ClipItem:
        image = load_image(str(images[i % len(images)]))
        return ClipItem(clip.pixels([image]), f"a photo of scene {i}")

    start = time.perf_counter()
    pending: list[ClipItem] = []
    for item in bounded_map(prepare, range(count), workers=workers, window=4 * workers):
        pending.append(item)
        if len(pending) == batch:
            score_items(clip, pending)
            pending = []
    score_items(clip, pending)
    sync()
    batched = count / (time.perf_counter() - start)

    pipeline = None
    try:
        from curate.signals.score import ScoreConfig, score_manifest
        from curate.workspace import Workspace
    except ImportError:  # e.g. polars missing on a bare GPU machine
        return {
            "model": clip.label,
            "device": clip.device,
            "baseline": baseline,
            "batched": batched,
            "pipeline": pipeline,
            "workers": workers,
        }
    folder = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        workspace = Workspace.resolve(folder)
        _manifest(workspace, images, count)
        config = ScoreConfig(signals=("clip",), clip=options, chunk_rows=max(1024, batch * 4))
        start = time.perf_counter()
        score_manifest(workspace, "bench", config, progress=False)
        pipeline = count / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "model": clip.label,
        "device": clip.device,
        "baseline": baseline,
        "batched": batched,
        "pipeline": pipeline,
        "workers": workers,
    }


def bench_neardup(n: int, dim: int, dense_n: int, block: int, device: str | None) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    planted = rng.choice(n, size=(min(1000, n // 4), 2), replace=False)
    x[planted[:, 1]] = x[planted[:, 0]] + 0.05 * rng.normal(size=(len(planted), dim))
    threshold = 0.95

    small = neardup.normalise_rows(x[:dense_n])
    tracemalloc.start()
    start = time.perf_counter()
    sims = small @ small.T  # the dense baseline
    dense_pairs = np.argwhere(np.triu(sims >= threshold, k=1))
    dense_time = time.perf_counter() - start
    dense_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del sims
    tracemalloc.start()
    start = time.perf_counter()
    block_pairs = neardup.cosine_pairs(x[:dense_n], threshold, block=block, device=device)
    block_time = time.perf_counter() - start
    block_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    same = {tuple(p) for p in dense_pairs.tolist()} == {tuple(p) for p in block_pairs.tolist()}

    if device is not None:
        import torch

        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    start = time.perf_counter()
    pairs = neardup.cosine_pairs(x, threshold, block=block, device=device)
    labels = neardup.connected_components(n, pairs)
    keep = neardup.keep_first(labels)
    full_time = time.perf_counter() - start
    full_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    found = labels[planted[:, 0]] == labels[planted[:, 1]]
    gpu_peak = None
    if device is not None:
        import torch

        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    return {
        "gpu_peak_mb": gpu_peak,
        "n": n,
        "dim": dim,
        "dense_n": dense_n,
        "dense_s": dense_time,
        "dense_peak_mb": dense_peak / 2**20,
        "block_s": block_time,
        "block_peak_mb": block_peak / 2**20,
        "parity": same,
        "full_s": full_time,
        "full_peak_mb": full_peak / 2**20,
        "input_mb": x.nbytes / 2**20,
        "pairs": len(pairs),
        "dropped": int((~keep).sum()),
        "recall": float(found.mean()),
    }


def bench_hamming(n: int, brute_n: int, bits: int) -> dict:
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    hashes ^= rng.integers(0, 2, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(63)
    copies = rng.choice(n, size=(min(1000, n // 4), 2), replace=False)
    for a, b in copies:
        flips = rng.choice(64, size=rng.integers(0, bits + 1), replace=False)
        hashes[b] = hashes[a] ^ np.uint64(sum(1 << int(f) for f in flips))

    sub = hashes[:brute_n]
    start = time.perf_counter()
    brute = []
    for i0 in range(0, brute_n, 4096):  # blockwise brute force: the baseline
        d = np.bitwise_count(sub[i0 : i0 + 4096, None] ^ sub[None, :])
        ii, jj = np.nonzero(d <= bits)
        keep = ii + i0 < jj
        brute.append(np.stack([ii[keep] + i0, jj[keep]], axis=1))
    brute_pairs = np.concatenate(brute)
    brute_time = time.perf_counter() - start
    start = time.perf_counter()
    banded = neardup.hamming_pairs(sub, bits)
    banded_small = time.perf_counter() - start
    parity = np.array_equal(
        neardup.connected_components(brute_n, brute_pairs),
        neardup.connected_components(brute_n, banded),
    )
    start = time.perf_counter()
    pairs = neardup.hamming_pairs(hashes, bits)
    labels = neardup.connected_components(n, pairs)
    full_time = time.perf_counter() - start
    recall = float((labels[copies[:, 0]] == labels[copies[:, 1]]).mean())
    return {
        "n": n,
        "brute_n": brute_n,
        "brute_s": brute_time,
        "banded_small_s": banded_small,
        "parity": parity,
        "full_s": full_time,
        "recall": recall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes (a smoke run).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CLIP and near-dup).")
    parser.add_argument("--vit-items", type=int, default=None, help="Items for ViT-B-32.")
    parser.add_argument("--n", type=int, default=100_000, help="Embeddings in the near-dup pass.")
    parser.add_argument("--dim", type=int, default=512, help="Embedding dimension (ViT-B-32: 512).")
    parser.add_argument("--skip-clip", action="store_true")
    parser.add_argument("--skip-neardup", action="store_true")
    parser.add_argument("--skip-hamming", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    gpu = args.device.startswith("cuda")

    print(
        f"curate signals benchmark ({'quick' if quick else 'default'} sizes, device {args.device})"
    )
    if not args.skip_clip:
        print("\n== CLIP scoring (items/s, real COCO photos, captions; random weights) ==")
        runs = [
            ("curate-tiny-clip", 200 if quick else 1000, 100 if quick else 300, 64),
            (
                "ViT-B-32",
                args.vit_items or (32 if quick else (2000 if gpu else 256)),
                16 if quick else (200 if gpu else 64),
                256 if gpu else 32,
            ),
        ]
        for model, count, base_count, batch in runs:
            r = bench_clip(model, count, base_count, args.device, batch)
            pipeline = "n/a" if r["pipeline"] is None else f"{r['pipeline']:.1f}"
            print(
                f"{r['model']:<24} {r['device']:<4} one-at-a-time {r['baseline']:7.1f} | "
                f"batched {r['batched']:7.1f} ({r['batched'] / r['baseline']:.1f}x) | "
                f"score_manifest {pipeline} items/s "
                f"({count} items, batch {batch}, {r['workers']} loader threads)"
            )

    if not args.skip_neardup:
        _print_neardup(args, quick, gpu)
    if not args.skip_hamming:
        _print_hamming(quick)
    print(f"\nprocess peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _print_neardup(args, quick: bool, gpu: bool) -> None:
    print("\n== Near-duplicates by embedding (cosine >= 0.95, blocks of 4096) ==")
    n = 20_000 if quick else args.n
    r = bench_neardup(
        n,
        args.dim,
        dense_n=5_000 if quick else 10_000,
        block=4096,
        device=args.device if gpu else None,
    )
    print(
        f"dense n x n baseline on {r['dense_n']:,}: {r['dense_s']:.2f} s, peak "
        f"{r['dense_peak_mb']:.0f} MB | blockwise on the same rows: {r['block_s']:.2f} s, peak "
        f"{r['block_peak_mb']:.0f} MB (memory ratio {r['dense_peak_mb'] / max(r['block_peak_mb'], 1e-9):.1f}x, "
        f"same pairs: {r['parity']})"
    )
    print(
        f"blockwise on {r['n']:,} x {r['dim']}: {r['full_s']:.1f} s, peak {r['full_peak_mb']:.0f} MB "
        f"beyond the {r['input_mb']:.0f} MB input (a dense matrix would need "
        f"{r['n'] ** 2 * 4 / 2**30:.0f} GiB); {r['pairs']} pairs, {r['dropped']} rows dropped, "
        f"planted-pair recall {r['recall']:.3f}"
        + ("" if r["gpu_peak_mb"] is None else f"; GPU peak {r['gpu_peak_mb']:.0f} MB")
    )


def _print_hamming(quick: bool) -> None:
    print("\n== Near-duplicates by pHash (<= 6 bits, multi-index hashing) ==")
    h = bench_hamming(100_000 if quick else 1_000_000, brute_n=20_000 if quick else 50_000, bits=6)
    print(
        f"blockwise brute force on {h['brute_n']:,}: {h['brute_s']:.2f} s | multi-index: "
        f"{h['banded_small_s']:.2f} s (ratio {h['brute_s'] / h['banded_small_s']:.1f}x, same "
        f"clusters: {h['parity']}) | multi-index on {h['n']:,}: {h['full_s']:.1f} s, planted recall "
        f"{h['recall']:.3f}"
    )


if __name__ == "__main__":
    main()
