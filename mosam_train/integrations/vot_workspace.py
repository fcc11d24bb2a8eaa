"""A ready VOT toolkit workspace on the built-in synthetic sets, with no network:

    python -m mosam_train.integrations.vot_workspace OUT --tracker ckpt=/abs/model.ckpt \\
        [--tracker tracker=samurai ...] [--named base "ckpt=/abs/base.pt sam2=..." ...]
        [--data data=synthetic_long] [--videos 2] [--frames 10] [--sequences N]

writes under OUT:

- `sequences/`: the first `--videos` videos of the data config's test split (eval.py's
  videos; `--data` takes eval.py's data overrides), their first `--frames` frames, one VOT
  sequence per object (`<video>-<object id>`, objects visible on the first frame):
  `color/%08d.png` (lossless), `groundtruth.txt` (one mask a frame, in the toolkit's own
  RLE, written by the toolkit's writer; an empty mask where the object is hidden),
  `anchor.value` (a forward start on the first frame, a backward one on the last where the
  object is visible), the `sequence` file and `list.txt`;
- `stack.yaml`: the local stack (`local_stack`): VOT-ST's multi-start experiment with its
  EAO interval and failure settings scaled to these short sequences, and VOTS' unsupervised
  multi-object experiment; its title says it is not comparable with published results;
- `trackers.ini`: `mosam` (the tracker entry point with the `--tracker` overrides), one
  entry per `--named NAME ARGS` (the entry point with those arguments, to compare several
  models or rules in one workspace) and `static` (the static baseline: each object's first
  region on every frame);
- `config.yaml`: the workspace (that stack, that registry, those sequences).

Then: `python -m mosam_train.integrations.vot_toolkit evaluate --workspace OUT mosam static`
and `... analysis --workspace OUT --name NAME` (the toolkit's command line without its
update check), and `python -m mosam_train.integrations.vot_report OUT/analysis/NAME.json`
prints the toolkit's figures as one table. Requires the `vot` extra (the toolkit's own
writers are used).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import numpy as np
import yaml
from hydra.utils import instantiate
from PIL import Image

from mosam_train.data.video import VideoRecord
from mosam_train.integrations.vot import compose_vot
from mosam_train.models.shipped import is_shipped

NOT_COMPARABLE = "not comparable with published VOT results"
# VOT2020-2022 short-term: EAO over sequence lengths 115..755, failures after 10 frames of
# overlap under 0.1 (grace), accuracy from 10 frames after a start (burn-in)
VOT_EAO_LOW, VOT_EAO_HIGH, VOT_GRACE = 115, 755, 10


def local_stack(frames: int) -> dict:
    """The local stack for sequences of `frames` frames. EAO's interval keeps VOT's ratio
    with its upper bound at the sequence length (VOT takes the bulk of its sequence lengths);
    grace and burn-in shrink to a tenth of the sequence, but at least 2 frames: the toolkit
    counts the start frame itself as one frame under the threshold, so with 1 every run
    would fail on its first frame."""
    high = frames
    low = max(1, math.ceil(high * VOT_EAO_LOW / VOT_EAO_HIGH))
    grace = max(2, min(VOT_GRACE, frames // 10))
    scaled = {"burnin": grace, "grace": grace}
    return {
        "title": f"mosam-train synthetic, {frames}-frame sequences (local; {NOT_COMPARABLE})",
        "experiments": {
            "baseline": {
                "type": "multistart",
                "analyses": [
                    {"type": "multistart_eao_score", "name": "EAO", "low": low,
                     "high": high, **scaled},
                    {"type": "multistart_eao_curve", "name": "EAO curve", "high": high, **scaled},
                    {"type": "multistart_average_ar", "name": "AR", **scaled},
                ],
            },
            "unsupervised": {
                "type": "unsupervised",
                "repetitions": 1,
                "multiobject": True,
                "analyses": [
                    {"type": "average_accuracy", "name": "Quality", "burnin": 0,
                     "ignore_unknown": False, "weighted": False},
                    {"type": "longterm_ar", "name": "AR"},
                ],
            },
        },
    }  # fmt: skip


def eval_records(data_overrides: list[str]) -> list[VideoRecord]:
    """The videos eval.py scores with these data overrides (the data config's test split),
    generated first where the data config does so (data=synthetic, synthetic_long)."""
    from mosam_train.tasks.inference_model import compose_eval
    from mosam_train.tasks.vos_evaluation import evaluated_records

    cfg = compose_eval(data_overrides)
    return evaluated_records(instantiate(cfg.data, _convert_="all"), None)


def write_sequence(record: VideoRecord, oid: int, frames: int, root: Path) -> str | None:
    """Object `oid` of `record` over its first `frames` frames as a VOT sequence under
    `root`; its name, or None when the object is not visible on the first frame."""
    from vot.region import Mask
    from vot.region.io import write_trajectory
    from vot.utilities import write_properties

    n = min(frames, record.num_frames)
    row = list(record.object_ids).index(oid)
    masks = [record.load_masks(t)[row].astype(bool) for t in range(n)]
    if not masks[0].any():
        return None
    name = f"{record.name}-{oid}"
    folder = root / name
    (folder / "color").mkdir(parents=True, exist_ok=True)
    for t, rgb in enumerate(record.load_frames(list(range(n)))):
        Image.fromarray(rgb).save(folder / "color" / f"{t + 1:08d}.png")
    write_trajectory(str(folder / "groundtruth.txt"), [Mask(m.astype(np.uint8)) for m in masks])
    visible = [t for t, m in enumerate(masks) if m.any()]
    anchors = [0] * n
    anchors[0] = 1
    if visible[-1] > 0:
        anchors[visible[-1]] = -1
    (folder / "anchor.value").write_text("".join(f"{a}\n" for a in anchors))
    write_properties(
        str(folder / "sequence"),
        {"name": name, "fps": 30, "format": "default", "channels.color": "color/%08d.png",
         "width": record.width, "height": record.height, "length": n},
    )  # fmt: skip
    return name


def trackers_ini(tracker_args: list[str], named: dict[str, list[str]] | None = None) -> str:
    """`mosam` (the entry point with `tracker_args`), the `named` entries (name: their
    arguments) and `static` (the static baseline), run by this Python with this checkout of
    the project first on its path."""
    repo = Path(__file__).resolve().parents[2]
    python = shlex.quote(sys.executable)

    def entry(label: str, args: list[str]) -> str:
        command = " ".join([python, "-m", "mosam_train.integrations.vot", *map(shlex.quote, args)])
        return (
            f"label = {label}\nprotocol = trax\ncommand = {command}\n"
            f"env_PYTHONPATH = {repo}\ntimeout = 120\n"
        )

    sections = {"mosam": tracker_args, **(named or {})}
    return (
        "".join(
            f"[{name}]\n{entry('mosam-train ' + ' '.join(args), args)}\n"
            for name, args in sections.items()
        )
        + f"[static]\n{entry('static (first region on every frame)', ['baseline=copy_first'])}"
    )


def check_tracker(name: str, tracker_args: list[str]) -> None:
    """Refuse, before anything is written, an entry the toolkit could not run."""
    cfg = compose_vot(tracker_args)  # a bad tracker configuration stops here, not later
    if not cfg.get("baseline") and not cfg.get("ckpt"):
        raise SystemExit(
            f"error: {name}: ckpt=/absolute/path/to/model (a .ckpt or .pt) or baseline= needed"
        )
    if cfg.get("ckpt") and not is_shipped(cfg.ckpt) and not Path(cfg.ckpt).is_absolute():
        raise SystemExit(
            f"error: {name}: ckpt={cfg.ckpt} is relative; the toolkit runs trackers in a "
            f"temporary folder. Fix: ckpt={Path(cfg.ckpt).resolve()}"
        )


def write_workspace(
    out: Path,
    tracker_args: list[str],
    data_overrides: list[str] | None = None,
    videos: int = 2,
    frames: int = 10,
    sequences: int | None = None,
    named: dict[str, list[str]] | None = None,
) -> list[str]:
    """Everything above under `out` (at most `sequences` sequences); returns their names."""
    reserved = {"mosam", "static"} & set(named or {})
    if reserved:
        raise SystemExit(f"error: --named {reserved.pop()}: that name is the workspace's own")
    for name, args in {"mosam": tracker_args, **(named or {})}.items():
        check_tracker(name, args)
    root = out / "sequences"
    names: list[str] = []
    for record in eval_records(data_overrides or [])[:videos]:
        for oid in record.object_ids:
            if sequences is not None and len(names) >= sequences:
                break
            name = write_sequence(record, int(oid), frames, root)
            if name is not None:
                names.append(name)
    (root / "list.txt").write_text("".join(f"{n}\n" for n in names))
    (out / "stack.yaml").write_text(
        yaml.safe_dump(local_stack(frames), sort_keys=False, width=1000)
    )
    (out / "trackers.ini").write_text(trackers_ini(tracker_args, named))
    config = {"stack": "./stack.yaml", "registry": ["./trackers.ini"], "sequences": "sequences"}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.integrations.vot_workspace", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out", type=Path, help="the workspace folder (created)")
    parser.add_argument(
        "--tracker", action="append", default=[], metavar="KEY=VALUE",
        help="an argument of the tracker entry point (configs/vot.yaml), e.g. ckpt=/abs/m.ckpt",
    )  # fmt: skip
    parser.add_argument(
        "--named", action="append", nargs=2, default=[], metavar=("NAME", "ARGS"),
        help='one more tracker entry: its name and its arguments, e.g. base "ckpt=/abs/b.pt"',
    )  # fmt: skip
    parser.add_argument(
        "--data", action="append", default=[], metavar="OVERRIDE",
        help="an eval.py data override, e.g. data=synthetic_long (default: data=synthetic)",
    )  # fmt: skip
    parser.add_argument("--videos", type=int, default=2, help="first N videos of the split")
    parser.add_argument("--frames", type=int, default=10, help="first N frames of each video")
    parser.add_argument("--sequences", type=int, default=None, help="at most N sequences")
    args = parser.parse_args(argv)
    named = {name: shlex.split(text) for name, text in args.named}
    names = write_workspace(
        args.out, args.tracker, args.data, args.videos, args.frames, args.sequences, named
    )
    trackers = ", ".join(["mosam", *named, "static"])
    print(f"{args.out}: {len(names)} sequences ({NOT_COMPARABLE}); trackers {trackers}")


if __name__ == "__main__":
    main()
