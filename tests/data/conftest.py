"""Fixtures for the data tests: a hand-made DAVIS writer (the synthetic set is in tests/conftest.py)."""

from __future__ import annotations

import pytest
from layouts.davis import write_sequence, write_split


class DavisWriter:
    """Writes hand-made DAVIS-layout sequences (fixture `davis_writer`)."""

    sequence = staticmethod(write_sequence)
    split = staticmethod(write_split)


@pytest.fixture
def davis_writer() -> type[DavisWriter]:
    return DavisWriter
