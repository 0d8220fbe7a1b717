"""Facts about the TAU Urban Acoustic Scenes 2019 development dataset (DCASE 2019 task 1A)."""

from __future__ import annotations

#: Scene labels exactly as they appear in TAU's ``meta.csv``, in the order of the paper's tables.
SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)

#: The ten recording cities.
CITIES: tuple[str, ...] = (
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)

#: Folder name of the unpacked development set (what Zenodo's archives unpack into).
DEV_DIRNAME = "TAU-urban-acoustic-scenes-2019-development"

#: Format of every TAU recording.
SAMPLE_RATE = 48_000
CHANNELS = 2
SUBTYPE = "PCM_24"
CLIP_SECONDS = 10.0
