"""The published results this project reproduces, as data.

Source: H. Schuchardt, "Darling, where are you? Acoustic scene classification" (blog post, 2019-11-13), the
results section; transcribed in ``shared/reference/paper.md`` ("Published results"). TAU Urban Acoustic Scenes
2019 development set, the blog's 60:20:20 split per scene and city, frozen ImageNet VGG16 + a 512-unit head.
"""

from __future__ import annotations

import numpy as np

SOURCE = 'H. Schuchardt, "Darling, where are you? Acoustic scene classification" (blog, 2019-11-13), results'

#: Validation accuracy in %, (mean, std) over 3 seeds, by (time window in s, largest masked band as a fraction).
VAL_ACC: dict[tuple[float, float], tuple[float, float]] = {
    (3.0, 0.0): (60.2, 0.8), (3.0, 0.1): (58.7, 0.2), (3.0, 0.2): (58.2, 0.6),
    (5.0, 0.0): (71.2, 0.8), (5.0, 0.1): (70.8, 0.0), (5.0, 0.2): (69.5, 0.8),
    (7.0, 0.0): (63.6, 1.7), (7.0, 0.1): (62.9, 2.4), (7.0, 0.2): (64.6, 0.7),
}
SEEDS = 3
WINDOWS = (3.0, 5.0, 7.0)
MASKS = (0.0, 0.1, 0.2)

#: The cell the blog evaluated on the test set, and its result.
BEST_CELL = (5.0, 0.0)
TEST_CORRECT, TEST_CLIPS = 2019, 2898
TEST_ACC = 69.7  # %, = 100 * 2019 / 2898 rounded as published

#: Test-set confusion matrix of the best cell: rows true, columns predicted, in this class order.
CLASSES = (
    "airport", "bus", "metro", "metro_station", "park",
    "public_square", "shopping_mall", "street_pedestrian", "street_traffic", "tram",
)
CONFUSION = np.array(
    [
        [217, 0, 3, 3, 0, 22, 34, 11, 0, 0],
        [1, 255, 21, 0, 0, 0, 0, 1, 2, 10],
        [6, 15, 202, 21, 1, 2, 0, 1, 0, 41],
        [33, 4, 39, 158, 0, 15, 14, 11, 5, 11],
        [4, 0, 0, 0, 244, 27, 0, 6, 6, 3],
        [18, 1, 1, 6, 13, 182, 12, 42, 15, 0],
        [37, 0, 3, 9, 0, 10, 210, 19, 1, 1],
        [35, 1, 2, 9, 5, 58, 19, 152, 6, 2],
        [2, 1, 0, 4, 14, 48, 1, 10, 209, 1],
        [4, 21, 54, 13, 3, 1, 0, 3, 1, 190],
    ],
    dtype=np.int64,
)
CONFUSION.setflags(write=False)


def val_acc(window: float, mask: float) -> tuple[float, float] | None:
    """Published validation accuracy (mean, std) in % for a grid cell, or None outside the published grid."""
    return VAL_ACC.get((round(float(window), 6), round(float(mask), 6)))
