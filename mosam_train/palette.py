"""The colours a label map is drawn with: data writes its synthetic set with them, metrics
plots, inference writes prediction PNGs and overlays, bench writes its fixtures, so they
live below all of them."""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def voc_palette() -> tuple[int, ...]:
    """The PASCAL VOC colormap (DAVIS palette) as a flat 768-long list for `putpalette`."""
    cmap = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return tuple(int(v) for v in cmap.reshape(-1))
