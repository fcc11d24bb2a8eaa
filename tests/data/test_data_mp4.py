"""Exact random access into H.264 with B-frames, for both decoders, and bad files.

Every frame has its index drawn into its pixels (`layouts.sav.draw_index`), so "frame t"
is checked by reading the index back, not by trusting either decoder.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from layouts.sav import draw_index, encode_mp4, read_index

from mosam_train.data.formats import mp4
from mosam_train.data.formats.mp4 import Mp4Video, available_backends
from mosam_train.errors import DataError

N, H, W = 50, 64, 96
GOP = 12
BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(b not in available_backends(), reason=f"no {b}"))
    for b in mp4.BACKENDS
]


@pytest.fixture(autouse=True)
def _fresh_handles():
    """Each test opens its own decoders (the per-process cache is module state)."""
    mp4.close_all()
    yield
    mp4.close_all()


@pytest.fixture(scope="module")
def bframes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mp4") / "bframes.mp4"
    encode_mp4(path, [draw_index(t, H, W) for t in range(N)], options={"bf": "3", "g": str(GOP)})
    return path


def test_fixture_has_b_frames_and_reordering(bframes):
    with av.open(str(bframes)) as c:
        frames = list(c.decode(video=0))
    with av.open(str(bframes)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    types = [av.video.frame.PictureType(f.pict_type).name for f in frames]
    assert types.count("B") >= N // 3, types
    assert types.count("I") == -(-N // GOP), types
    assert pts != sorted(pts)  # decode order differs from presentation order
    assert [read_index(f.to_ndarray(format="rgb24")) for f in frames] == list(range(N))


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_access_returns_exactly_the_asked_frames(bframes, backend):
    v = Mp4Video(bframes, backend)
    assert (v.num_frames, v.height, v.width) == (N, H, W)
    assert v.fps == pytest.approx(24)
    rng = np.random.default_rng(0)
    orders = [
        rng.permutation(N).tolist(),
        [N - 1],
        [0],
        [N - 1, 0, N - 1, 0],
        [13, 13, 12, 11, 24, 23, 36],  # around keyframes 12, 24, 36
        list(range(N)),
        list(range(N))[::-1],
        [N - 1, N - 2, N - 3],
    ]
    orders += [rng.integers(0, N, int(rng.integers(1, 8))).tolist() for _ in range(40)]
    for idx in orders:
        frames = v.read(idx)
        assert frames.shape == (len(idx), H, W, 3) and frames.dtype == np.uint8
        assert [read_index(f) for f in frames] == idx
    for t in rng.permutation(N).tolist():
        assert read_index(v.read_frame(t)) == t
    assert v.read([]).shape == (0, H, W, 3)


def test_backends_agree_pixelwise(bframes):
    if len(available_backends()) < 2:
        pytest.skip("needs both decord and PyAV")
    idx = [49, 3, 27, 27, 0]
    a = Mp4Video(bframes, "decord").read(idx).astype(int)
    b = Mp4Video(bframes, "pyav").read(idx).astype(int)
    assert np.abs(a - b).mean() < 2.0


def test_pyav_decodes_from_the_nearest_keyframe(bframes):
    """Reading a late frame seeks instead of decoding the video from its start."""
    v = Mp4Video(bframes, "pyav")
    v.read_frame(0)
    dec = mp4._open[(str(bframes), "pyav", 1)]
    assert read_index(v.read_frame(40)) == 40
    assert dec._floor == 36 and not dec._from_start  # started at keyframe 36
    assert read_index(v.read_frame(43)) == 43 and dec._floor == 36  # kept decoding forward


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_flag_gives_displayed_frames(tmp_path, backend):
    path = tmp_path / "rotated.mp4"
    encode_mp4(path, [draw_index(t, H, W) for t in range(8)], rotation=90)
    v = Mp4Video(path, backend)
    assert (v.height, v.width) == (W, H)  # stored landscape, displayed portrait
    frames = v.read([5, 2])
    assert frames.shape == (2, W, H, 3)
    # displayed = stored turned 90 degrees counter-clockwise
    assert [read_index(np.rot90(f, -1)) for f in frames] == [5, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickles_without_handles_and_reopens(bframes, backend):
    v = Mp4Video(bframes, backend)
    assert read_index(v.read_frame(7)) == 7
    copy = pickle.loads(pickle.dumps(v))
    mp4.close_all()
    assert copy.num_frames == N
    assert read_index(copy.read_frame(31)) == 31


def test_open_decoders_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(mp4, "MAX_OPEN", 2)
    videos = []
    for k in range(3):
        path = tmp_path / f"v{k}.mp4"
        encode_mp4(path, [draw_index(10 * k + t, H, W) for t in range(4)])
        videos.append(Mp4Video(path, "pyav"))
    for k, v in enumerate(videos):
        assert read_index(v.read_frame(1)) == 10 * k + 1
    assert len(mp4._open) == 2 and str(videos[0].path) not in {key[0] for key in mp4._open}
    assert read_index(videos[0].read_frame(3)) == 3  # evicted: reopened on demand


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file(tmp_path, backend):
    v = Mp4Video(tmp_path / "nope.mp4", backend)  # creating is free: nothing is opened
    with pytest.raises(DataError, match=r"nope\.mp4: video file not found") as e:
        v.read([0])
    assert e.value.path == tmp_path / "nope.mp4"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-end", "index-first"])
def test_truncated_file(tmp_path, bframes, backend, faststart):
    src = bframes
    if faststart:  # index first: the frame table survives, the frame data does not
        src = tmp_path / "faststart.mp4"
        with (
            av.open(str(bframes)) as i,
            av.open(str(src), "w", options={"movflags": "+faststart"}) as o,
        ):
            s = o.add_stream_from_template(i.streams.video[0])
            for p in i.demux(i.streams.video[0]):
                if p.size:
                    p.stream = s
                    o.mux(p)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    v = Mp4Video(cut, backend)
    with pytest.raises(DataError, match=r"cut\.mp4: .*Fix: re-download") as e:
        v.read(list(range(N)))
    assert e.value.path == cut
    if backend == "pyav" and faststart:  # the index survived: the loss is named
        assert "truncated: its index lists 50 frames" in str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_video(tmp_path, backend):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"junk\.mp4: cannot open the video"):
        Mp4Video(junk, backend).read([0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_out_of_range(bframes, backend):
    v = Mp4Video(bframes, backend)
    for bad in ([N], [0, N + 5], [-1]):
        with pytest.raises(
            DataError, match=rf"bframes\.mp4: frame index -?\d+ is out of range.*{N}"
        ):
            v.read(bad)
    assert read_index(v.read_frame(N - 1)) == N - 1  # still usable


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown video backend"):
        Mp4Video("x.mp4", "opencv")
