"""Trains in a subprocess and freezes right after a chosen point, so a test can kill -9 it.

    python -m tests.train.kill_runner MIXTURE OUT WORKSPACE OVERRIDES_JSON STAGE STEP

After the checkpoint (STAGE, STEP) is saved, the run trains one more step, writes its metrics
line (work a resumed run must redo), touches OUT/.frozen and sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from curate.workspace import Workspace
from train import trainer
from train.config import load_train_config


def main() -> None:
    mixture, out, workspace = (Path(a) for a in sys.argv[1:4])
    overrides = json.loads(sys.argv[4])
    stage, step = int(sys.argv[5]), int(sys.argv[6])
    saved = {"done": False}
    real_save = trainer.save_checkpoint
    real_write = trainer._Metrics.write

    def save(folder, **kw):
        path = real_save(folder, **kw)
        if (kw["stage"], kw["step"]) == (stage, step):
            saved["done"] = True
        return path

    def write(self, row):
        real_write(self, row)
        if saved["done"] and row["stage_index"] == stage and row["step"] == step + 1:
            (out / ".frozen").write_text("")
            while True:
                time.sleep(1)

    trainer.save_checkpoint = save
    trainer._Metrics.write = write
    trainer.train_run(
        mixture=mixture,
        workspace=Workspace.resolve(workspace),
        config=load_train_config("tiny-cpu", overrides),
        out_dir=out,
        progress=False,
    )


if __name__ == "__main__":
    main()
