"""Keep a resumed run's CSV log whole: Lightning's CSV writer deletes ``metrics.csv`` when it starts, which
would drop every epoch logged before ``--resume``."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only

from neurofit.io import atomic_path


def logged_rows(path: Path, checkpoint: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of an earlier session's ``metrics.csv`` logged before the step ``checkpoint`` was saved at, and
    the file's columns. Rows an interrupted session logged after its last checkpoint are trained again, so
    they are dropped; that includes rows at the checkpoint's own step, which Lightning logs as the next
    epoch starts (its learning rate and first loss), while the checkpointed epoch's validation row carries
    the step before. Nothing when the file does not exist."""
    if not path.exists():
        return [], []
    # mmap: only the step counter is read, not the weights into memory
    step = int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [row for row in reader if not row.get("step") or int(float(row["step"])) < step]
        return rows, list(reader.fieldnames or [])


def restore_rows(csv_logger, rows: list[dict[str, str]], columns: list[str]) -> None:
    """Write ``rows`` back into the CSV logger's ``metrics.csv`` (atomically) after its writer has started,
    so the new session's rows are appended after them. Only on the rank that writes the log."""
    # Other ranks get a placeholder experiment that answers every attribute, so ask for the rank itself.
    if not rows or rank_zero_only.rank > 0:
        return
    writer = csv_logger.experiment  # starting the writer deletes the old file
    path = Path(writer.metrics_file_path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=columns)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = sorted(columns)
