"""Download official SAM 2 checkpoints and check that they load.

    python -m mosam_train.models.download NAME [NAME ...] [--dir checkpoints] [--url URL] [--force]

NAME is a variant of `SAM2_VARIANTS` (e.g. `sam2.1_hiera_tiny`) or `all` (every variant
with an official URL). `--url` overrides the URL of a single NAME and is required for
variants without official weights (`sam2.1_micro`); a local path is accepted too.

Each file is streamed to `<dir>/<name>.pt.part`, its size is checked against the
Content-Length header, the variant's model is built and the file loaded into it strictly
(no checksums are published, so size + strict keys are the check), and only then is it
renamed to `<dir>/<name>.pt` with its sha256 in `<dir>/<name>.pt.sha256` (sha256sum format).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mosam_train.atomic_files import write_text_atomically
from mosam_train.checkpoint_files import sha256_of
from mosam_train.models.sam2_builder import (
    SAM2_VARIANTS,
    WeightsMismatchError,
    build_sam2,
    load_sam2_weights,
)

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60.0
_URL_SCHEMES = ("http", "https", "ftp", "file")


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched or is not a usable SAM 2 checkpoint."""


def official_names() -> list[str]:
    """Variants with official weights (what `all` stands for)."""
    return [name for name, v in SAM2_VARIANTS.items() if v.url]


def _normalize_url(url: str) -> str:
    """Plain local paths become file:// URLs; everything else is passed through."""
    if urllib.parse.urlparse(url).scheme.lower() not in _URL_SCHEMES:
        path = Path(url).expanduser()
        if not path.is_file():
            raise DownloadError(
                f"--url {url} is neither a URL nor an existing file. Pass an http(s):// or "
                f"file:// URL, or the path of a local .pt file."
            )
        return path.resolve().as_uri()
    return url


def _sha_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_sha(sha_file: Path) -> str | None:
    try:
        text = sha_file.read_text().strip()
    except OSError:
        return None
    return text.split()[0].lower() if text else None


def _write_sha(path: Path, digest: str) -> None:
    write_text_atomically(_sha_path(path), f"{digest}  {path.name}\n")


def _stream(url: str, part: Path, label: str, console: Console) -> str:
    """Stream `url` to `part`; check the size; return the sha256. Deletes `part` on failure."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DownloadError(
            f"Download of {url} failed: HTTP {e.code} {e.reason}. Check the URL (or pass the "
            f"right one with --url) and rerun."
        ) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"Could not open {url}: {reason}. Check the URL and your network connection, "
            f"then rerun."
        ) from e

    digest = hashlib.sha256()
    received = 0
    try:
        with response:
            header = response.headers.get("Content-Length")
            expected = int(header) if header and header.strip().isdigit() else None
            if expected is None:
                console.print(
                    f"{url} sent no Content-Length; the size cannot be checked "
                    f"(the strict key check still runs).",
                    style="yellow",
                )
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with (
                open(part, "wb") as f,
                Progress(*columns, console=console) as progress,
            ):
                task = progress.add_task(label, total=expected)
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except http.client.IncompleteRead as e:
                        chunk = e.partial
                        f.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        break
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(task, advance=len(chunk))
    except BaseException as e:
        part.unlink(missing_ok=True)
        if isinstance(e, (OSError, http.client.HTTPException)):
            raise DownloadError(
                f"Download of {url} broke off after {received} bytes ({e}). The partial file "
                f"was deleted; rerun the command to download again."
            ) from e
        raise
    if expected is not None and received != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Download of {url} is incomplete: expected {expected} bytes (Content-Length) but "
            f"received {received}. The partial file was deleted; rerun the command to "
            f"download again."
        )
    return digest.hexdigest()


def download_checkpoint(
    name: str,
    directory: str | Path = "checkpoints",
    url: str | None = None,
    force: bool = False,
    *,
    console: Console | None = None,
) -> Path:
    """Fetch SAM 2 variant `name` into `directory`, check it loads strictly; return its path.

    Raises `DownloadError` (unknown name, no URL, transfer failed or incomplete, not a
    checkpoint) or `WeightsMismatchError` (keys/shapes do not fit the variant's model).
    """
    console = console or _console()
    if name not in SAM2_VARIANTS:
        raise DownloadError(
            f"Unknown SAM 2 variant {name!r}. Pick one of: {', '.join(SAM2_VARIANTS)} (or all)."
        )
    variant = SAM2_VARIANTS[name]
    url = _normalize_url(url) if url else variant.url
    if url is None:
        raise DownloadError(
            f"SAM 2 variant {name} has no official checkpoint to download. Pass one with "
            f"--url (e.g. --url file:///path/to/{name}.pt)."
        )

    directory = Path(directory)
    final = directory / f"{name}.pt"
    part = directory / f"{name}.pt.part"
    sha_file = _sha_path(final)

    if final.is_file() and not force:
        recorded = _recorded_sha(sha_file)
        if recorded is not None and recorded == sha256_of(final):
            console.print(
                f"{name}: {final} is already downloaded (sha256 matches {sha_file.name}); "
                f"skipping. Use --force to download it again."
            )
            return final
        console.print(
            f"{name}: {final} exists but has no matching {sha_file.name}; downloading again."
        )

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"Cannot create the checkpoint folder {directory}: {e.strerror}. Pass a writable "
            f"folder with --dir."
        ) from e

    console.print(f"{name}: downloading {url} -> {part}")
    digest = _stream(url, part, name, console)

    console.print(f"{name}: checking that the weights load strictly into a {name} model")
    model = build_sam2(name)
    keep_note = (
        f"The download is kept at {part} for inspection (a rerun replaces it). Check that the "
        f"URL points to {name} weights, or pick the variant that matches the file."
    )
    try:
        load_sam2_weights(model, part, variant=name)
    except WeightsMismatchError as e:
        raise WeightsMismatchError(f"{e}\n  {keep_note}") from e
    except Exception as e:
        raise DownloadError(
            f"{url} did not yield a readable SAM 2 checkpoint ({type(e).__name__}: {e}). "
            f"{keep_note}"
        ) from e
    del model

    sha_file.unlink(missing_ok=True)
    os.replace(part, final)
    _write_sha(final, digest)
    console.print(f"{name}: saved {final} (sha256 {digest})")
    return final


def _console() -> Console:
    # No markup: messages hold paths and URLs, which may contain brackets.
    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


def _one_line(message: str) -> str:
    """Multi-line reports (e.g. the weights mismatch) joined into one line."""
    out = ""
    for line in (part.strip() for part in str(message).splitlines()):
        if line:
            out += (" " if out.endswith((".", ":", ";")) else "; ") + line if out else line
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.models.download",
        description="Download official SAM 2 checkpoints and check that they load strictly.",
    )
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"variant(s) to fetch, or 'all': {', '.join(SAM2_VARIANTS)}",
    )
    parser.add_argument(
        "--dir", default="checkpoints", type=Path, help="target folder (default: checkpoints)"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="override the URL (or local path) of a single NAME; required for sam2.1_micro",
    )
    parser.add_argument("--force", action="store_true", help="download even if already present")
    args = parser.parse_args(argv)

    names: list[str] = []
    for n in args.names:
        for m in official_names() if n == "all" else [n]:
            if m not in names:
                names.append(m)
    if args.url is not None and len(names) != 1:
        parser.error(f"--url overrides the URL of one NAME, but {len(names)} were given.")

    console = _console()
    try:
        for n in names:
            path = download_checkpoint(n, args.dir, url=args.url, force=args.force, console=console)
            print(path)
    except (DownloadError, WeightsMismatchError) as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; any partial download was deleted.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
