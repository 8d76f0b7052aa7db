"""torchrun with 2 CPU processes (gloo) equals one process on the concatenated batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.train.mixtures import real_rows, write_mixture

pytestmark = pytest.mark.slow


def launch(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def outcome(shared_data, tmp_path_factory):
    rows = real_rows(shared_data, videos=False)  # images, texts, hard negatives, mixed pairs
    # one stage under another name: both config stages train on it
    mixture = write_mixture(tmp_path_factory.mktemp("mix") / "m", {"pool": rows[:12]})
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    worker = ["-m", "tests.train.ddp_worker", str(out), str(mixture)]
    launch(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *worker,
        ],
        env,
    )
    results = {
        name: json.loads((out / name).read_text())
        for name in ("result-world2-rank0.json", "result-world2-rank1.json")
    }
    # the single-process reference runs here, in this (already warm) process
    from tests.train.ddp_worker import run_all
    from train.distributed import DistInfo

    results["result-world1-rank0.json"] = run_all(out, mixture, DistInfo())
    return out, results


@pytest.mark.parametrize("case", ["full", "uneven"])
def test_two_ranks_give_the_loss_and_gradients_of_one_process(outcome, case):
    _, results = outcome
    single = results["result-world1-rank0.json"][case]
    ranks = [results[f"result-world2-rank{r}.json"][case] for r in (0, 1)]
    assert sum(r["pairs"] for r in ranks) == single["pairs"]
    if case == "uneven":
        assert [r["pairs"] for r in ranks] == [3, 2]  # ranks hold different numbers of rows
    for rank in ranks:
        assert rank["loss"] == pytest.approx(single["loss"], abs=1e-5)
        assert rank["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            # float32 sums in another order: equal to ~1e-7 relative, far below any real bug
            want, got = torch.tensor(grad), torch.tensor(rank["grads"][name])
            assert (got - want).norm() <= 1e-5 * want.norm() + 1e-7, name
    assert max(max(abs(x) for x in g) for g in single["grads"].values()) > 1e-4


def test_torchrun_training_run_matches_the_single_process_run(outcome):
    out, _ = outcome

    def losses(world):
        lines = (out / f"run-world{world}" / "metrics.jsonl").read_text().splitlines()
        return [
            (json.loads(x)["stage_index"], json.loads(x)["step"], json.loads(x)["loss"])
            for x in lines
        ]

    single, double = losses(1), losses(2)
    assert (
        [s[:2] for s in single]
        == [d[:2] for d in double]
        == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    )
    for (_, _, a), (_, _, b) in zip(single, double, strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    assert (out / "run-world2" / "_COMPLETE").is_file()
    meta = json.loads((out / "run-world2" / "meta.json").read_text())
    assert meta["world_size"] == 2
