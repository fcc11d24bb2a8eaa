"""The demo (`predict.py` / `tasks.predict`): an mp4 or a frame folder plus a first-frame
prompt in, per-frame masks, boxes and an overlay video out; bad input refused up front."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mosam_train import tasks
from mosam_train.data.formats.davis import read_davis
from mosam_train.errors import DataError
from mosam_train.inference.boxes import mask_to_box
from mosam_train.inference.demo import (
    OverlayVideo,
    parse_boxes,
    parse_points,
    read_mask_prompt,
    read_prompts,
)
from mosam_train.inference.prompts import PointPrompt
from mosam_train.inference.video_input import open_video
from mosam_train.tasks import prediction

NUM_FRAMES = 6
SIZE = (120, 160)  # the synthetic videos' height, width


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip(small_synthetic):
    """First frames (uint8 [T, H, W, 3]) and first-frame GT masks of a synthetic video."""
    record = read_davis(small_synthetic, "val")[0]
    return record.load_frames(range(NUM_FRAMES)), record.load_masks(0)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def write_folder(folder: Path, frames: np.ndarray, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{t:05d}.jpg" for t in range(len(frames))]
    for name, f in zip(names, frames, strict=True):
        Image.fromarray(f).save(folder / name, quality=95)
    return folder


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return frames, float(c.streams.video[0].average_rate)


def check_outputs(out: Path, num_frames: int, ids: list[int], fps: float | None = None) -> None:
    """masks/, boxes/<id>.txt and overlay.mp4 hold one entry per input frame, at its size,
    and each object's label-map pixels lie inside its box."""
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(num_frames)]
    boxes = {}
    for oid in ids:
        lines = (out / "boxes" / f"{oid}.txt").read_text().splitlines()
        assert len(lines) == num_frames
        boxes[oid] = [tuple(int(v) for v in ln.split(",")) for ln in lines]
    found = 0
    for t, p in enumerate(pngs):
        with Image.open(p) as im:
            assert im.mode == "P"
            labels = np.array(im)
        assert labels.shape == SIZE
        assert set(np.unique(labels)) <= {0, *ids}
        for oid in ids:
            x, y, w, h = boxes[oid][t]
            region = labels == oid
            if (w, h) == (0, 0):
                assert not region.any()
                continue
            found += 1
            inside = np.zeros(SIZE, bool)
            inside[y : y + h, x : x + w] = True
            assert not (region & ~inside).any()
    assert found > 0
    frames, rate = read_video(out / "overlay.mp4")
    assert len(frames) == num_frames
    assert all(f.shape == (*SIZE, 3) for f in frames)
    if fps is not None:
        assert rate == pytest.approx(fps)


# ---------------------------------------------------------------------- end to end
def test_mp4_with_a_box_file_of_two_objects(compose_config, tmp_path, clip, micro_weights):
    frames, gt = clip
    video = write_mp4(tmp_path / "clip.mp4", frames, fps=12)
    box_file = tmp_path / "boxes.txt"
    box_file.write_text(
        "".join(" ".join(str(int(v)) for v in mask_to_box(m)) + "\n" for m in gt[:2])
    )
    cfg = compose_config(
        "predict",
        f"video={video}",
        f"box={box_file}",
        f"ckpt={micro_weights}",
        "device=cpu",
        out=tmp_path / "out",
    )
    summary = tasks.predict(cfg)
    assert summary["num_frames"] == NUM_FRAMES and summary["objects"] == [1, 2]
    check_outputs(tmp_path / "out", NUM_FRAMES, [1, 2], fps=12)


def test_jpg_folder_with_a_mask_prompt(compose_config, tmp_path, clip, micro_weights):
    frames, gt = clip
    folder = write_folder(tmp_path / "frames", frames)
    label = np.zeros(SIZE, np.uint8)
    label[gt[0]] = 3  # ids are the PNG's values
    Image.fromarray(label).save(tmp_path / "first.png")
    cfg = compose_config(
        "predict",
        f"video={folder}",
        f"mask={tmp_path / 'first.png'}",
        f"ckpt={micro_weights}",
        out=tmp_path / "out",
    )
    assert tasks.predict(cfg)["objects"] == [3]
    check_outputs(tmp_path / "out", NUM_FRAMES, [3], fps=30)


def test_clicks_on_a_folder_in_natural_order(compose_config, tmp_path, clip, micro_weights):
    frames, gt = clip
    names = [f"{t + 1}.jpg" for t in range(NUM_FRAMES)]  # 1.jpg ... (no zero padding)
    folder = write_folder(tmp_path / "frames", frames, names)
    assert [p.name for p in open_video(folder).files] == names
    ys, xs = np.nonzero(gt[0])
    cfg = compose_config(
        "predict",
        f"video={folder}",
        f"points=[[{xs[0]},{ys[0]},1]]",
        f"ckpt={micro_weights}",
        out=tmp_path / "out",
    )
    assert tasks.predict(cfg)["num_frames"] == NUM_FRAMES
    check_outputs(tmp_path / "out", NUM_FRAMES, [1])


def test_predict_py_with_an_inline_box(run_script, tmp_path, clip, micro_weights):
    frames, gt = clip
    folder = write_folder(tmp_path / "frames", frames)
    x, y, w, h = (int(v) for v in mask_to_box(gt[0]))
    out = tmp_path / "run"
    run_script(
        "predict.py",
        f"video={folder}",
        f"box=[{x},{y},{w},{h}]",
        f"ckpt={micro_weights}",
        "sam2=micro",
        f"hydra.run.dir={out}",
        timeout=300,
    )
    check_outputs(out, NUM_FRAMES, [1])
    assert "frames with a box" in (out / "predict.log").read_text()


def test_predict_py_refuses_a_box_outside_the_video_before_loading_a_model(
    run_script, tmp_path, clip
):
    folder = write_folder(tmp_path / "frames", clip[0][:2])
    out = tmp_path / "run"
    proc = run_script(
        "predict.py",
        f"video={folder}",
        "box=[200,10,20,20]",
        f"ckpt={tmp_path / 'missing.pt'}",
        f"hydra.run.dir={out}",
        ok=False,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "lies outside the 160x120 image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "masks").exists()


def test_bad_input_fails_before_the_model_is_loaded(compose_config, tmp_path, clip, monkeypatch):
    def no_model(cfg):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(prediction, "inference_propagator", no_model)
    folder = write_folder(tmp_path / "frames", clip[0][:2])
    bad = tmp_path / "bad.txt"
    bad.write_text("10,20,30\n")
    cfg = compose_config(
        "predict", f"video={folder}", f"box={bad}", "ckpt=whatever.pt", out=tmp_path / "out"
    )
    with pytest.raises(DataError, match=r"bad\.txt:1: expected 4 numbers"):
        tasks.predict(cfg)
    good = tmp_path / "good.txt"
    good.write_text("10,20,30,40\n")
    cfg = compose_config(
        "predict", f"video={folder}", f"box={good}", "ckpt=missing.pt", out=tmp_path / "out"
    )
    with pytest.raises(DataError, match=r"ckpt=missing\.pt: no such file"):
        tasks.predict(cfg)


# ---------------------------------------------------------------------- video input
def test_unreadable_video_empty_folder_and_mixed_sizes_name_the_file(tmp_path, clip):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    with pytest.raises(DataError, match=r"clip\.mp4: cannot open the video"):
        open_video(fake)
    with pytest.raises(DataError, match=r"missing\.mp4: no such file or folder"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty: the folder holds no frames"):
        open_video(tmp_path / "empty")
    folder = write_folder(tmp_path / "mixed", clip[0][:3])
    Image.fromarray(clip[0][0][:100]).save(folder / "00003.jpg")
    with pytest.raises(DataError, match=r"00003\.jpg: frame is 100x160 but the first frame"):
        open_video(folder)


def test_mp4_frames_are_read_lazily_in_order(tmp_path, clip):
    frames = clip[0]
    video = open_video(write_mp4(tmp_path / "c.mp4", frames))
    assert (video.num_frames, video.height, video.width) == (NUM_FRAMES, *SIZE)
    got = video.read([2, 3])
    # lossy H.264: close to the source frames, and each nearest to its own
    err = [[np.abs(g.astype(int) - f.astype(int)).mean() for f in frames] for g in got]
    assert [int(np.argmin(e)) for e in err] == [2, 3]


@pytest.mark.parametrize("size", [(120, 160), (121, 161)])
def test_overlay_video_keeps_any_frame_size(tmp_path, size):
    """Odd sizes too (H.264 4:2:0 cannot hold them; the writer switches to 4:4:4)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, *size, 3), dtype=np.uint8)
    video = OverlayVideo(tmp_path / "o.mp4", size, fps=7.5)
    for f in frames:
        video.write(f)
    video.close()
    got, rate = read_video(tmp_path / "o.mp4")
    assert [g.shape for g in got] == [(*size, 3)] * 3
    assert rate == pytest.approx(7.5)


# ---------------------------------------------------------------------- prompt forms
def test_box_forms():
    size = SIZE
    assert parse_boxes([10, 20, 30, 40], size) == [(10.0, 20.0, 30.0, 40.0)]
    assert parse_boxes([[10, 20, 30, 40], [0, 0, 5, 5]], size) == [
        (10.0, 20.0, 30.0, 40.0),
        (0.0, 0.0, 5.0, 5.0),
    ]
    assert parse_boxes("10,20,30,40", size) == [(10.0, 20.0, 30.0, 40.0)]
    # crossing the border: clipped to the image
    assert parse_boxes([150, -5, 20, 20], size) == [(150.0, 0.0, 10.0, 15.0)]
    with pytest.raises(DataError, match="has zero size"):
        parse_boxes([10, 20, 0, 40], size)
    with pytest.raises(DataError, match="lies outside the 160x120 image"):
        parse_boxes([10, 120, 5, 5], size)
    with pytest.raises(
        DataError, match=r"box=\[10, 20, 30\]: expected 4 numbers.*write box=\[x,y,w,h\]"
    ):
        parse_boxes([10, 20, 30], size)
    with pytest.raises(DataError, match="box file not found"):
        parse_boxes("no_such_boxes.txt", size)


def test_box_files_one_object_per_line_or_one_frame_per_line(tmp_path):
    f = tmp_path / "groundtruth.txt"
    f.write_text("10,20,30,40\n11\t21\t30\t40\n\n0,0,0,0\n")
    with pytest.raises(DataError, match=r"groundtruth\.txt: box 3.*zero size.*box_per_line=frame"):
        parse_boxes(f, SIZE)
    assert parse_boxes(f, SIZE, box_per_line="frame") == [(10.0, 20.0, 30.0, 40.0)]
    f.write_text("10 20 30 40\n11,21,30,40\n")
    assert len(parse_boxes(f, SIZE)) == 2
    f.write_text("10,20,thirty,40\n")
    with pytest.raises(DataError, match=r"groundtruth\.txt:1: expected 4 numbers"):
        parse_boxes(f, SIZE)
    f.write_text("\n")
    with pytest.raises(DataError, match="no boxes"):
        parse_boxes(f, SIZE)


def test_point_forms():
    assert parse_points([5, 6], SIZE) == [PointPrompt(((5, 6),), (1,))]
    assert parse_points([[5, 6, 1], [7, 8, 0]], SIZE) == [PointPrompt(((5, 6), (7, 8)), (1, 0))]
    two = parse_points([[[5, 6, 1]], [[7, 8, 1], [9, 9, 0]]], SIZE)
    assert [p.num_points for p in two] == [1, 2]
    with pytest.raises(DataError, match="lies outside the 160x120 image"):
        parse_points([[160, 6, 1]], SIZE)
    with pytest.raises(DataError, match="has label 2"):
        parse_points([[5, 6, 2]], SIZE)
    with pytest.raises(DataError, match="no positive click"):
        parse_points([[5, 6, 0]], SIZE)


def test_mask_prompts(tmp_path):
    binary = np.zeros(SIZE, np.uint8)
    binary[10:20, 30:40] = 255
    Image.fromarray(binary).save(tmp_path / "m.png")
    masks = read_mask_prompt(tmp_path / "m.png", SIZE)
    assert list(masks) == [1] and masks[1].sum() == 100
    with pytest.raises(DataError, match=r"m\.png: mask is 160x120 but the video is 80x60"):
        read_mask_prompt(tmp_path / "m.png", (60, 80))
    colour = np.zeros((*SIZE, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="colour"):
        read_mask_prompt(tmp_path / "c.png", SIZE)
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(tmp_path / "e.png")
    with pytest.raises(DataError, match="the mask is empty"):
        read_mask_prompt(tmp_path / "e.png", SIZE)


def test_exactly_one_prompt_form():
    with pytest.raises(DataError, match=r"got box and points"):
        read_prompts(SIZE, box=[1, 2, 3, 4], points=[5, 6])
    with pytest.raises(DataError, match=r"got none"):
        read_prompts(SIZE)
    prompts = read_prompts(SIZE, box=[[1, 2, 3, 4], [5, 6, 7, 8]])
    assert prompts == {1: PointPrompt(box=(1, 2, 3, 4)), 2: PointPrompt(box=(5, 6, 7, 8))}
