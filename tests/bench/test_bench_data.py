"""The data benchmark runs end to end (tiny sizes: this checks the command, not speed)."""

from __future__ import annotations

from mosam_train.bench import data as bench


def test_bench_prints_a_row_per_dataset_and_flow(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "SAV_SIZE", (120, 160))
    monkeypatch.setattr(bench, "JPEG_SIZE", (120, 160))
    args = ["--image-size", "64", "--clip-len", "3", "--clips", "1", "--workdir", str(tmp_path)]
    bench.main(args)
    out = capsys.readouterr().out
    assert out.count("s/clip") == 6 and "workers per GPU" in out
    assert (tmp_path / "SA-V" / "sav_train" / "sav_000" / "sav_000000_manual.json").exists()
    bench.main([*args, "--gpu-step-s", "1000"])  # reuses the written data
    assert "GPU step 1000.000 s" in capsys.readouterr().out
