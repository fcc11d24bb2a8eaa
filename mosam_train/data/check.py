"""Dataset check: read every video of a split the way training and evaluation will, and
list every problem instead of stopping at the first.

    python -m mosam_train.data.check data=sav data.root=/data/SA-V data.split=sav_val

stdout: one JSON line per video (`video`, `num_frames`, `annotated_frames`, `object_ids`,
`first_appearance` {object id: frame}, `pixel_counts` {object id: [count on each annotated
frame, in `annotated_frames` order]}, `problems`), then one `{"summary": ...}` line.
stderr: a progress bar and each problem as ``<path>: <message>``. Exit status 1 if there
was any problem. Lines are flushed as each video finishes, so a long check can be
followed (and its output kept) while it runs.

`data=mix` checks each mixed source in turn (its own root and split; each line then has
`source`: the mix entry). Box-tracking configs (`data=tracking/...`) are refused: their
readers check every box file when the split is read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import Progress

from mosam_train.data.formats import format_names, read_split, source_spec
from mosam_train.data.video import VideoRecord
from mosam_train.errors import DataError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
FRAME_CHUNK = 32


def _problem(e: Exception, fallback: Path | str) -> dict[str, str]:
    if isinstance(e, DataError):
        return {"path": str(e.path or fallback), "message": str(e)}
    # a reader should only raise DataError on bad files; anything else is still reported
    return {"path": str(fallback), "message": f"{type(e).__name__}: {e}"}


def check_record(record: VideoRecord, frames: str = "all") -> dict[str, Any]:
    """The JSON line of one video: what was read and every problem met while reading."""
    problems: list[dict[str, str]] = []
    where = record.source

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:
            problems.append(_problem(e, where))
            return None

    size = (record.height, record.width)
    if frames != "none":
        ts = list(range(record.num_frames)) if frames == "all" else list(record.annotated_frames)
        for start in range(0, len(ts), FRAME_CHUNK):
            chunk = ts[start : start + FRAME_CHUNK]
            images = guarded(lambda c=chunk: record.load_frames(c))
            if images is None:  # find the bad frame(s) one by one
                problems.pop()
                images = [guarded(lambda t=t: record.load_frame(t)) for t in chunk]
            for t, im in zip(chunk, images, strict=True):
                if im is not None and im.shape != (*size, 3):
                    problems.append(
                        {
                            "path": str(where),
                            "message": f"{record.name} frame {t}: decoded {im.shape[0]}x"
                            f"{im.shape[1]}x{im.shape[2]}, but the video is {size[0]}x{size[1]}"
                            f" RGB. Fix: re-encode or re-extract the video.",
                        }
                    )
    ids = list(record.object_ids)
    counts: dict[int, list[int | None]] = {oid: [] for oid in ids}
    seen_first: dict[int, int] = {}
    for t in record.annotated_frames:
        masks = guarded(lambda t=t: record.load_masks(t))
        if masks is not None and masks.shape != (len(ids), *size):
            problems.append(
                {
                    "path": str(where),
                    "message": f"{record.name} frame {t}: masks {tuple(masks.shape)}, expected "
                    f"{(len(ids), *size)} (objects x height x width). Fix: see the layout in "
                    f"data/README.md.",
                }
            )
            masks = None
        for k, oid in enumerate(ids):
            n = None if masks is None else int(masks[k].sum())
            counts[oid].append(n)
            if n and oid not in seen_first:
                seen_first[oid] = t
    first = guarded(record.first_appearance) or {}
    if not problems:
        never = [oid for oid in ids if oid not in seen_first]
        if never:
            problems.append(
                {
                    "path": str(where),
                    "message": f"{record.name}: objects {never} are never present in any mask. "
                    f"Fix: remove them from the metadata or label them.",
                }
            )
        wrong = {oid: (first.get(oid), seen_first[oid]) for oid in seen_first}
        wrong = {k: v for k, v in wrong.items() if v[0] != v[1]}
        if wrong:
            problems.append(
                {
                    "path": str(where),
                    "message": f"{record.name}: first appearance disagrees with the masks "
                    f"(object: (stated, in masks)) {wrong}. Fix: correct the metadata.",
                }
            )
    return {
        "video": record.name,
        "num_frames": record.num_frames,
        "annotated_frames": list(record.annotated_frames),
        "object_ids": ids,
        "first_appearance": {str(k): int(v) for k, v in sorted(first.items())},
        "pixel_counts": {str(k): v for k, v in counts.items()},
        "problems": _dedupe(problems),
    }


def _dedupe(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    """One entry per file: a truncated video fails on every frame after the cut."""
    first: dict[str, dict[str, str]] = {}
    repeats: dict[str, int] = {}
    for p in problems:
        if p["path"] in first:
            repeats[p["path"]] += 1
        else:
            first[p["path"]], repeats[p["path"]] = dict(p), 0
    for path, n in repeats.items():
        if n:
            first[path]["message"] += f" ({n} more problem(s) in this file)"
    return list(first.values())


def check_split(
    fmt: str, root: str | Path, split: str, frames: str = "all", **reader: Any
) -> Iterator[dict[str, Any]]:
    """JSON-ready lines for every video of the split: first the videos the reader could not
    even open (its construction errors), then every other video in split order."""
    errors: list[DataError] = []
    try:
        records = read_split(fmt, root, split, errors=errors, **reader)
    except DataError as e:  # the split itself is unreadable (missing root, split list, ...)
        yield {"video": None, "problems": [_problem(e, root)]}
        return
    for e in errors:
        yield {"video": e.video, "problems": [_problem(e, root)]}
    yield {"videos": len(records) + len(errors)}
    for record in records:
        yield check_record(record, frames)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def hydra_choice(group: str) -> str | None:
    """``<group>=<option>`` of the running Hydra job, if any (for messages)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    option = HydraConfig.get().runtime.choices.get(group)
    return None if option is None else f"{group}={option}"


def data_sources(data: DictConfig) -> list[tuple[str | None, dict[str, Any]]]:
    """What the check reads, as (mix name or None, `formats.source_spec` mapping): the
    dataset's `data.split`, or with `data.mix` every mixed source in turn (its own format,
    root, split, reader and subset), as training reads them. Only the keys a reader needs
    are resolved: the check config has no model, which other data keys refer to."""
    if "format" not in data:
        option = hydra_choice("data")
        what = option or "this data config"
        kind = (
            f"a box-tracking benchmark ({data.benchmark})"
            if "benchmark" in data
            else "a config without data.format"
        )
        raise ValueError(
            f"{what} is {kind}, not a mask (VOS) dataset: the dataset check reads the "
            f"dataset formats {', '.join(format_names())} only. Fix: check a VOS config "
            f"(data=davis|sav|ytvos|mose|lvos|synthetic|mix); box-tracking readers check "
            f"every box file when `python eval.py task=tracking {option or 'data=tracking/...'}` "
            f"reads the split."
        )
    if data.get("mix"):
        mix = _plain(data.mix)
        return [
            (name, source_spec(f"data.mix.{name}", src))
            for name, src in mix.items()
            if src is not None
        ]
    keys = ("format", "root", "split", "reader", "subset")
    return [(None, source_spec("data", {k: _plain(data[k]) for k in keys if k in data}))]


def run_check(cfg: DictConfig, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Check `cfg.data`'s split (`data.split`; with `data.mix`, every mixed source's own
    split, each line then naming its `source`); returns the exit status."""
    if cfg.frames not in ("all", "annotated", "none"):
        raise ValueError(f"frames must be all, annotated or none, got {cfg.frames!r}")
    sources = data_sources(cfg.data)
    sinks = [out]
    if cfg.get("output"):
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(open(cfg.output, "w"))  # noqa: SIM115 (closed below)
    console = Console(file=err)
    keys = ("videos", "frames", "annotated_frames", "objects", "problems")
    totals = dict.fromkeys(keys, 0)
    bad_videos = 0
    verdicts: list[str] = []
    try:
        with Progress(console=console, transient=True) as progress:
            for name, src in sources:
                what = f"{src['format']} {src['split']}" + (f" (data.mix.{name})" if name else "")
                task = progress.add_task(f"checking {what}", total=None)
                own = dict.fromkeys(keys, 0)
                lines = check_split(
                    src["format"], src["root"], src["split"], cfg.frames,
                    subset=src["subset"], **src["reader"],
                )  # fmt: skip
                for line in lines:
                    if "videos" in line and "video" not in line:
                        progress.update(task, total=line["videos"])
                        continue
                    if name is not None:
                        line = {"source": name, **line}
                    for sink in sinks:
                        sink.write(json.dumps(line) + "\n")
                        sink.flush()
                    for p in line["problems"]:
                        console.print(
                            f"[red]{p['path']}[/red]: {p['message']}",
                            highlight=False,
                            soft_wrap=True,
                        )
                    own["videos"] += 1
                    own["problems"] += len(line["problems"])
                    bad_videos += bool(line["problems"])
                    own["frames"] += line.get("num_frames", 0)
                    own["annotated_frames"] += len(line.get("annotated_frames", []))
                    own["objects"] += len(line.get("object_ids", []))
                    progress.advance(task)
                for k in keys:
                    totals[k] += own[k]
                verdict = "no problems" if not own["problems"] else f"{own['problems']} problem(s)"
                verdicts.append(
                    f"{what} at {src['root']}: {own['videos']} videos, {own['frames']} frames, "
                    f"{own['annotated_frames']} annotated, {verdict}"
                )
        summary = {"summary": {**totals, "videos_with_problems": bad_videos}}
        for sink in sinks:
            sink.write(json.dumps(summary) + "\n")
            sink.flush()
    finally:
        for sink in sinks[1:]:
            sink.close()
    for verdict in verdicts:
        console.print(verdict, highlight=False, soft_wrap=True)
    return 1 if totals["problems"] else 0


def main() -> None:
    import hydra

    status = 0

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="check")
    def app(cfg: DictConfig) -> None:
        nonlocal status
        status = run_check(cfg)

    app()
    sys.exit(status)


if __name__ == "__main__":
    main()
