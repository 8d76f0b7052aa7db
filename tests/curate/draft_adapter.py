"""A test-only adapter: JSONL lines holding draft fields directly.

It lets tests drive the ingest core with exactly the drafts they need, and (with the `sleep` option)
slowly enough to kill a run between two batches: the environment variable CURATE_TEST_SLEEP (seconds
after each batch; not an option, so it does not change the input fingerprint). Tests import this
module to register it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, rejected


@register
class DraftsJsonl(Adapter):
    name = "test-drafts"
    description = "test only: JSONL of draft fields"

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        pause = float(os.environ.get("CURATE_TEST_SLEEP", "0"))
        for batch in batched_drafts(self._rows(ctx), batch_rows=ctx.batch_rows):
            yield batch
            time.sleep(pause)

    def _rows(self, ctx: AdapterContext):
        with open(ctx.input_path, encoding="utf-8") as lines:
            for index, line in enumerate(lines):
                try:
                    fields = json.loads(line)
                except json.JSONDecodeError as error:
                    yield rejected(
                        record_index=index,
                        input_file=ctx.input_path,
                        reason="malformed_record",
                        message=f"line {index + 1} is not JSON: {error}",
                        raw=line.rstrip("\n"),
                    )
                    continue
                task = fields.pop("task", "retrieval")
                yield draft(
                    record_index=index,
                    input_file=ctx.input_path,
                    task=task,
                    raw=line.rstrip("\n"),
                    **fields,
                )
