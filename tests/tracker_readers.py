"""Read tracker logs back with each tool's own reader, for the tracking tests.

TensorBoard: its ``EventAccumulator``. MLflow: ``MlflowClient`` on the file store. W&B: since wandb 0.18 the Python
package ships no reader for its offline ``.wandb`` files (wandb-core, in Go, reads them), so `wandb_records` walks
the file's framing (LevelDB's log format: 32 KiB blocks of checksummed chunks, after W&B's 7-byte header) and parses
each record with W&B's own protobuf schema, ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
WANDB_HEADER = b":W&B\xe1\xbe"  # then a version byte


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a TensorBoard log folder, as (step, value) lists, after TensorBoard's own purging."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def tensorboard_tags(folder: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator.Tags()


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of one ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:len(WANDB_HEADER)] == WANDB_HEADER, f"{path}: not a .wandb file"
    records, pending, offset = [], b"", len(WANDB_HEADER) + 1
    while offset + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < CHUNK_HEADER:  # a block's tail too short for a chunk header is padding
            offset += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + CHUNK_HEADER])
        chunk = data[offset + CHUNK_HEADER:offset + CHUNK_HEADER + length]
        offset += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero padding
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_sessions(wandb_dir: Path, run_id: str) -> list[Path]:
    """The offline session folders of run ``run_id``, oldest first: ``offline-run-<time>-<id>``, and
    ``offline-run-<time>-<id>-<n>`` for a later session started within the same second."""
    pattern = re.compile(rf"offline-run-(\d{{8}}_\d{{6}})-{re.escape(run_id)}(?:-(\d+))?")
    found = [(m.group(1), int(m.group(2) or 0), p) for p in wandb_dir.iterdir() if (m := pattern.fullmatch(p.name))]
    return [p for _, _, p in sorted(found)]


def wandb_history(wandb_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """Every history row of W&B run ``run_id`` over all its offline sessions (``offline-run-*-<id>`` folders), in
    the order they were written; each row holds ``_step`` and the logged values (images as their JSON)."""
    rows = []
    for session in wandb_sessions(wandb_dir, run_id):
        for record in wandb_records(session / f"run-{run_id}.wandb"):
            if record.WhichOneof("record_type") == "history":
                row = {"_step": record.history.step.num}
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    row[key] = json.loads(item.value_json)
                rows.append(row)
    return rows


def wandb_run_fields(wandb_dir: Path, run_id: str) -> list[Any]:
    """The ``run`` records (project, group, name, config) of every offline session of ``run_id``."""
    return [record.run for session in wandb_sessions(wandb_dir, run_id)
            for record in wandb_records(session / f"run-{run_id}.wandb")
            if record.WhichOneof("record_type") == "run"]


def mlflow_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)]
