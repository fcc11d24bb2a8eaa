"""`python -m mosam_train.models.download`: fetch, size check, strict load, sha256, skip."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from rich.console import Console

from mosam_train.checkpoint_files import sha256_of
from mosam_train.models import download as dl
from mosam_train.models.download import DownloadError, download_checkpoint, main
from mosam_train.models.sam2_builder import (
    WeightsMismatchError,
    build_sam2,
    load_sam2_weights,
    read_sam2_state_dict,
)

REPO = Path(__file__).resolve().parents[2]
NAME = "sam2.1_micro"
MISSING_KEY = "obj_ptr_proj.layers.0.weight"


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch):
    monkeypatch.setattr(dl, "TIMEOUT_S", 10.0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """A good micro checkpoint, one with a key removed, and one that is not a checkpoint."""
    root = tmp_path_factory.mktemp("src")
    torch.manual_seed(0)
    sd = build_sam2(NAME).state_dict()
    good = root / "good.pt"
    torch.save({"model": sd}, good)
    missing = root / "missing.pt"
    torch.save({"model": {k: v for k, v in sd.items() if k != MISSING_KEY}}, missing)
    html = root / "page.html"
    html.write_text("<html>Access denied</html>\n")
    return {"good": good, "missing": missing, "html": html}


@pytest.fixture(scope="module")
def server(weights):
    """A local HTTP server: /good.pt, /short.pt (Content-Length larger than the body), 404."""
    body = weights["good"].read_bytes()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def do_GET(self):
            if self.path == "/good.pt":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/short.pt":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + 1000))
                self.end_headers()
                self.wfile.write(body)  # then the connection closes (HTTP/1.0)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", len(body)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def quiet() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, markup=False, highlight=False), buf


def files_in(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.exists() else set()


def assert_loads(path: Path, reference: Path) -> None:
    model = build_sam2(NAME)
    load_sam2_weights(model, path, variant=NAME)
    ref = read_sam2_state_dict(reference)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_file_url_download(weights, tmp_path):
    console, _ = quiet()
    out = tmp_path / "ckpt"
    path = download_checkpoint(NAME, out, url=weights["good"].as_uri(), console=console)
    assert path == out / f"{NAME}.pt"
    assert files_in(out) == {f"{NAME}.pt", f"{NAME}.pt.sha256"}
    assert (out / f"{NAME}.pt.sha256").read_text() == f"{sha256_of(path)}  {NAME}.pt\n"
    assert sha256_of(path) == sha256_of(weights["good"])
    assert_loads(path, weights["good"])


def test_plain_path_as_url(weights, tmp_path):
    console, _ = quiet()
    path = download_checkpoint(NAME, tmp_path, url=str(weights["good"]), console=console)
    assert sha256_of(path) == sha256_of(weights["good"])


def test_http_download(server, weights, tmp_path):
    base, _ = server
    console, _ = quiet()
    path = download_checkpoint(NAME, tmp_path, url=f"{base}/good.pt", console=console)
    assert sha256_of(path) == sha256_of(weights["good"])
    assert files_in(tmp_path) == {f"{NAME}.pt", f"{NAME}.pt.sha256"}


def test_existing_file_is_skipped_unless_forced(weights, tmp_path):
    url = weights["good"].as_uri()
    download_checkpoint(NAME, tmp_path, url=url, console=quiet()[0])
    pt = tmp_path / f"{NAME}.pt"
    os.utime(pt, (1, 1))

    console, buf = quiet()
    download_checkpoint(NAME, tmp_path, url=url, console=console)
    assert "skipping" in buf.getvalue() and "--force" in buf.getvalue()
    assert pt.stat().st_mtime == 1

    console, buf = quiet()
    download_checkpoint(NAME, tmp_path, url=url, force=True, console=console)
    assert "skipping" not in buf.getvalue()
    assert pt.stat().st_mtime != 1

    # A .sha256 that does not match the file: downloaded again.
    (tmp_path / f"{NAME}.pt.sha256").write_text(f"{'0' * 64}  {NAME}.pt\n")
    console, buf = quiet()
    download_checkpoint(NAME, tmp_path, url=url, console=console)
    assert "downloading again" in buf.getvalue()
    assert _recorded(tmp_path) == sha256_of(pt)


def _recorded(d: Path) -> str:
    return (d / f"{NAME}.pt.sha256").read_text().split()[0]


def test_short_download_is_deleted(server, tmp_path):
    base, size = server
    url = f"{base}/short.pt"
    with pytest.raises(DownloadError) as exc:
        download_checkpoint(NAME, tmp_path, url=url, console=quiet()[0])
    msg = str(exc.value)
    assert url in msg
    assert f"expected {size + 1000} bytes" in msg and f"received {size}" in msg
    assert "rerun" in msg
    assert files_in(tmp_path) == set()


def test_http_error_names_the_url(server, tmp_path):
    base, _ = server
    url = f"{base}/nothing.pt"
    with pytest.raises(DownloadError, match="HTTP 404") as exc:
        download_checkpoint(NAME, tmp_path, url=url, console=quiet()[0])
    assert url in str(exc.value)
    assert files_in(tmp_path) == set()


def test_keys_that_do_not_fit_keep_the_part_file(weights, tmp_path):
    with pytest.raises(WeightsMismatchError) as exc:
        download_checkpoint(NAME, tmp_path, url=weights["missing"].as_uri(), console=quiet()[0])
    msg = str(exc.value)
    assert f"missing keys: {MISSING_KEY}" in msg
    part = tmp_path / f"{NAME}.pt.part"
    assert f"kept at {part}" in msg
    assert files_in(tmp_path) == {part.name}


def test_sam21_weights_for_a_sam2_variant(weights, tmp_path, monkeypatch):
    # sam2_hiera_tiny is SAM 2 (no no_obj_embed_spatial); building it is fine, the file
    # (a micro 2.1 one) does not fit: mix-ups of both size and version are named.
    with pytest.raises(WeightsMismatchError) as exc:
        download_checkpoint(
            "sam2_hiera_tiny", tmp_path, url=weights["good"].as_uri(), console=quiet()[0]
        )
    msg = str(exc.value)
    assert "SAM 2 vs SAM 2.1" in msg and "no_obj_embed_spatial" in msg
    assert "holds a micro model" in msg
    assert files_in(tmp_path) == {"sam2_hiera_tiny.pt.part"}


def test_not_a_checkpoint(weights, tmp_path):
    with pytest.raises(DownloadError, match="did not yield a readable SAM 2 checkpoint") as exc:
        download_checkpoint(NAME, tmp_path, url=weights["html"].as_uri(), console=quiet()[0])
    assert "kept at" in str(exc.value)
    assert files_in(tmp_path) == {f"{NAME}.pt.part"}


def test_micro_needs_a_url(tmp_path):
    with pytest.raises(DownloadError, match="--url"):
        download_checkpoint(NAME, tmp_path, console=quiet()[0])
    assert files_in(tmp_path) == set()


def test_unknown_name_and_bad_url(tmp_path):
    with pytest.raises(DownloadError, match="Unknown SAM 2 variant 'sam3'"):
        download_checkpoint("sam3", tmp_path, console=quiet()[0])
    with pytest.raises(DownloadError, match="neither a URL nor an existing file"):
        download_checkpoint(NAME, tmp_path, url=str(tmp_path / "nope.pt"), console=quiet()[0])


def test_all_means_the_official_variants():
    names = dl.official_names()
    assert len(names) == 8 and NAME not in names


def test_cli_errors_are_one_line(weights, tmp_path, capsys):
    rc = main([NAME, "--url", weights["missing"].as_uri(), "--dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("error: SAM 2 weights in") and MISSING_KEY in err[-1]
    assert not any("Traceback" in line for line in err)

    assert main([NAME, "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().startswith("error: SAM 2 variant sam2.1_micro has no")

    with pytest.raises(SystemExit) as exc:
        main([NAME, "sam2.1_hiera_tiny", "--url", weights["good"].as_uri()])
    assert exc.value.code == 2


def test_cli_subprocess(weights, tmp_path):
    out = tmp_path / "ckpts"
    cmd = [sys.executable, "-m", "mosam_train.models.download", NAME]
    cmd += ["--url", weights["good"].as_uri(), "--dir", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / f"{NAME}.pt")
    assert _recorded(out) == sha256_of(out / f"{NAME}.pt")
