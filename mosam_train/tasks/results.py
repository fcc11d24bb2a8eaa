"""An evaluation's output directory, written as it goes so that a crash loses at most the
video in progress and a rerun in the same directory (`hydra.run.dir=...`) continues it.

VOS and box-tracking evaluation keep the same three things: rows appended to a CSV as each
video finishes, the list of finished videos, and the record of which model and settings
produced them, so that a rerun never mixes another model's rows into these.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mosam_train.checkpoint_files import fingerprint
from mosam_train.models.shipped import resolve_weights

DONE_FILE = "done_videos.txt"
WEIGHTS_FILE = "eval_weights.json"
CONFIG_FILE = "eval_config.json"
ZIP_FILE = "submission.zip"
PREDICTIONS_DIR = "predictions"
PLOTS_DIR = "plots"
#: settings that only say how a model trains, which no evaluation reads: left out when a
#: rerun's settings are compared with the recorded ones, so that a version adding or
#: changing one (e.g. `model.trainable`) still continues earlier results
TRAINING_ONLY = {
    "model": ("optim", "loss", "prompts", "trainable", "activation_checkpointing"),
    "data": ("augment",),
}


def _describe(weights: dict[str, Any] | None) -> str:
    if weights is None:
        return "no checkpoint (a baseline)"
    base = weights.get("sam2_base")
    return f"{weights['path']} (sha256 {weights['sha256']}" + (
        f"; frozen base {base['path']}, sha256 {base['sha256']})" if base else ")"
    )


def _evaluated(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` without the `TRAINING_ONLY` ones."""
    out = dict(settings)
    for node, keys in TRAINING_ONLY.items():
        if isinstance(out.get(node), dict):
            out[node] = {k: v for k, v in out[node].items() if k not in keys}
    return out


class ResultsDir:
    """`root`, holding `rows_file` (CSV with `fields`, one or more rows per video, keyed by
    the `key` column) and `done_videos.txt` (videos whose files are all written)."""

    def __init__(self, root: str | Path, rows_file: str, fields: Sequence[str], key: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.root / rows_file
        self.fields = list(fields)
        self.key = key

    def guard(self, cfg: DictConfig) -> None:
        """Refuse to continue rows that another model file, other settings or a version
        writing other columns produced.

        The checkpoint is compared by content (sha256, and its frozen base's for MoSAM), so
        a file replaced at the same path is caught; the settings by the resolved config."""
        ckpt = cfg.get("ckpt") and not cfg.get("baseline")
        weights = fingerprint(resolve_weights(cfg.ckpt)) if ckpt else None
        before = self._recorded(WEIGHTS_FILE, weights)
        if before != weights:
            raise ValueError(
                f"{self.root} holds results of another model: {_describe(before)} then, "
                f"{_describe(weights)} now. Fix: evaluate into a new directory "
                f"(hydra.run.dir=...), or restore the file these results came from."
            )
        if self.rows_path.is_file():
            with self.rows_path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.fields:
                raise ValueError(
                    f"{self.rows_path} has the columns {header}, this version writes "
                    f"{self.fields} (it was written by another version). Fix: evaluate into a "
                    f"new directory (hydra.run.dir=...)."
                )
        job = OmegaConf.to_container(cfg, resolve=True)
        job.pop("paths", None)
        job.pop("hydra", None)
        job = json.loads(json.dumps(job))  # as it reads back from the file
        if _evaluated(self._recorded(CONFIG_FILE, job)) != _evaluated(job):
            raise ValueError(
                f"{self.root} holds results of another evaluation ({self.root / CONFIG_FILE} "
                f"differs from this run's settings). Fix: evaluate into a new directory "
                f"(hydra.run.dir=...)."
            )

    def _recorded(self, name: str, value: Any) -> Any:
        """What file `name` records; on the first run `value`, which it then records."""
        path = self.root / name
        if path.is_file():
            return json.loads(path.read_text())
        path.write_text(json.dumps(value, indent=2))
        return value

    def rows(self) -> list[dict[str, str]]:
        """Rows written so far, in file order."""
        if not self.rows_path.is_file():
            return []
        with self.rows_path.open() as f:
            return list(csv.DictReader(f))

    def done(self) -> set[str]:
        """Finished videos: listed as done, or with rows (a crash after the rows were
        written and before the video was listed)."""
        path = self.root / DONE_FILE
        listed = set(path.read_text().splitlines()) if path.is_file() else set()
        return listed | {r[self.key] for r in self.rows()}

    def finish(self, video: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append `video`'s rows, then list it as done; both reach the disk before the next
        video starts."""
        rows = list(rows)
        if rows:
            new = not self.rows_path.is_file()
            with self.rows_path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                if new:
                    writer.writeheader()
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
        with (self.root / DONE_FILE).open("a") as f:
            f.write(video + "\n")
            f.flush()
            os.fsync(f.fileno())
