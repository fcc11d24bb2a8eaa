"""Reference tools the benchmarks compare against, installed beside the project, never into it.

A reference (``vos-benchmark``, or a package SAM 2's ``training`` code imports that the
project does not need) is installed once with ``pip install --no-deps --target DIR`` into a
cache folder and put at the *end* of ``sys.path`` by whoever uses it, so the project's own
packages always win and the project environment is never changed (``vos-benchmark``'s
declared dependencies would pull the GUI OpenCV). Only the modules the environment lacks are
installed; the rest of a reference's dependencies must already be there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ReferenceUnavailable", "cache_root", "pip_target"]


class ReferenceUnavailable(RuntimeError):
    """The reference could not be installed or imported; the message names the fix."""


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mosam_train/bench`` (``~/.cache/...`` by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mosam_train" / "bench"


def _missing(requirements: Mapping[str, str], always: tuple[str, ...]) -> list[str]:
    return [
        req
        for module, req in requirements.items()
        if module in always or importlib.util.find_spec(module) is None
    ]


def _import_error(target: Path, modules: Sequence[str]) -> str | None:
    """The last line of the error importing `modules` in a fresh interpreter with `target`
    appended to its path; None when they all import."""
    code = f"import sys; sys.path.append({str(target)!r}); " + "; ".join(
        f"import {m}" for m in modules
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def pip_target(
    name: str,
    requirements: Mapping[str, str],
    always: tuple[str, ...] = (),
    target: Path | None = None,
) -> Path:
    """The folder to append to ``sys.path`` so that every module of `requirements` (import
    name -> pip requirement) imports. Used as it is when they already import with it
    (default folder: a cache named after `name`); otherwise those in `always` and those the
    environment cannot import are installed there with ``--no-deps``.

    Raises `ReferenceUnavailable` (pip's last words and the fix) when pip or the import fails.
    """
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = target or cache_root() / f"{name}-{tag}"
    if _import_error(target, list(requirements)) is None:
        return target
    wanted = _missing(requirements, always)
    fix = (
        f"Fix: give this machine access to PyPI, or install them once by hand with "
        f"`{sys.executable} -m pip install --no-deps --target {target} {' '.join(wanted)}` "
        f"(an offline copy of that folder works too)."
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp),
               "--disable-pip-version-check", "--retries", "1", "--timeout", "20",
               *wanted]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
            raise ReferenceUnavailable(
                f"{name}: `pip install --no-deps --target {target}` of {' '.join(wanted)} "
                f"failed ({' / '.join(last)}). {fix}"
            )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # complete or absent, never half-installed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    error = _import_error(target, list(requirements))
    if error is not None:
        raise ReferenceUnavailable(
            f"{target}: {name} is installed there but does not import ({error}): a dependency "
            f"the project environment lacks, or one built for another numpy. {fix}"
        )
    return target
