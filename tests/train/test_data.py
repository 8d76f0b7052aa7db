"""Mixtures and batches: folder mixtures, stage mapping, deterministic and homogeneous batches."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import ConfigError, NotFoundError, SchemaError
from tests.train.mixtures import row, write_mixture
from train.config import load_train_config
from train.data import (
    StageData,
    homogeneous_for,
    open_mixture,
    pair_items,
    rank_slice,
    stage_tables,
)


def rows(n, pairs=("t2t",)):
    out = []
    for i in range(n):
        pair = pairs[i % len(pairs)]
        if pair == "t2t":
            out.append(row(f"r{i}", query_text=f"q{i}", target_text=f"t{i}"))
        else:
            out.append(row(f"r{i}", query_text=f"q{i}", target_images=[f"/img{i}.jpg"]))
    return out


def test_folder_mixture_keeps_stage_order_and_reads_rows_by_position(tmp_path):
    folder = write_mixture(
        tmp_path / "m", {"b_stage": rows(3), "a_stage": rows(2)}, name="demo", version="abc"
    )
    mix = open_mixture(folder)
    assert (mix.ref, list(mix.stages)) == ("demo@abc", ["b_stage", "a_stage"])
    data = StageData(mix.stages["b_stage"])
    assert [r["id"] for r in data.rows([2, 0])] == ["r2", "r0"]


def test_missing_mixture_and_missing_columns_are_clear(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        open_mixture(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no <stage>\.parquet"):
        open_mixture(tmp_path / "empty")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match="lacks columns"):
        StageData(tmp_path / "bad.parquet")


def test_stage_mapping_rules(tmp_path):
    config = load_train_config("tiny-cpu")
    both = open_mixture(
        write_mixture(
            tmp_path / "both", {"retrieval_adaptation": rows(2), "instruction_tuning": rows(2)}
        )
    )
    assert [p.stem for p in stage_tables(config, both)] == [
        "retrieval_adaptation",
        "instruction_tuning",
    ]
    # a mixture with one stage of another name: every config stage trains on it
    single = open_mixture(write_mixture(tmp_path / "single", {"all": rows(2)}))
    assert [p.stem for p in stage_tables(config, single)] == ["all", "all"]
    # a mixture with only the first stage: the second config stage is skipped
    first = open_mixture(write_mixture(tmp_path / "first", {"retrieval_adaptation": rows(2)}))
    assert [p and p.stem for p in stage_tables(config, first)] == ["retrieval_adaptation", None]
    # data no stage would read is an error, not silence
    extra = open_mixture(
        write_mixture(tmp_path / "extra", {"retrieval_adaptation": rows(2), "other": rows(2)})
    )
    with pytest.raises(ConfigError, match=r"stages \['other'\] match no stage"):
        stage_tables(config, extra)


def test_mixed_plan_follows_position_order_and_shuffle_is_seeded(tmp_path):
    data = StageData(write_mixture(tmp_path / "m", {"s": rows(10)}) / "s.parquet")
    plan = data.plan(global_batch=4, homogeneous=False, shuffle=False, seed=0, epoch=0)
    assert [b.tolist() for b in plan] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    a = data.plan(global_batch=4, homogeneous=False, shuffle=True, seed=3, epoch=1)
    b = data.plan(global_batch=4, homogeneous=False, shuffle=True, seed=3, epoch=1)
    c = data.plan(global_batch=4, homogeneous=False, shuffle=True, seed=3, epoch=2)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))


def test_homogeneous_batches_hold_one_pair_each(tmp_path):
    data = StageData(
        write_mixture(tmp_path / "m", {"s": rows(11, pairs=("t2t", "t2i"))}) / "s.parquet"
    )
    plan = data.plan(global_batch=3, homogeneous=True, shuffle=False, seed=0, epoch=0)
    pairs = data.pairs
    assert all(len(set(pairs[b].tolist())) == 1 for b in plan)
    assert sorted(np.concatenate(plan).tolist()) == list(range(11))
    assert [int(b.min()) for b in plan] == sorted(int(b.min()) for b in plan)
    shuffled = data.plan(global_batch=3, homogeneous=True, shuffle=True, seed=1, epoch=0)
    assert all(len(set(pairs[b].tolist())) == 1 for b in shuffled)


def test_batching_hint_comes_from_the_mixture_unless_the_stage_says(tmp_path):
    stage = load_train_config("tiny-cpu").stages[0]
    hinted = open_mixture(write_mixture(tmp_path / "h", {"s": rows(2)}, batching="homogeneous"))
    plain = open_mixture(write_mixture(tmp_path / "p", {"s": rows(2)}))
    assert homogeneous_for(stage, hinted) and not homogeneous_for(stage, plain)
    import dataclasses

    assert not homogeneous_for(dataclasses.replace(stage, batching="mixed"), hinted)
    assert homogeneous_for(dataclasses.replace(stage, batching="homogeneous"), plain)


def test_rank_slices_partition_a_global_batch():
    batch = np.arange(7)
    parts = [rank_slice(batch, rank=r, world=2, per_rank=4).tolist() for r in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6]]


def test_pair_items_take_the_first_hard_negative_when_asked():
    r = row("x", query_text="q", target_text="t", negative_texts=["n1", "n2"])
    assert pair_items(r, hard_negatives=True).negative.text == "n1"
    assert pair_items(r, hard_negatives=False).negative is None
