import numpy as np
import soundfile as sf

from asc.data.dataset import read_tau
from asc.data.scenes import SCENES
from asc.data.synth import SynthConfig, clip_names, render_clip


def test_tau_layout_and_format(tiny_tau):
    df = read_tau(tiny_tau)
    assert len(df) == 120 and set(df["label"]) == set(SCENES)
    first = tiny_tau / df["filename"][0]
    info = sf.info(first)
    assert (info.samplerate, info.channels, info.subtype) == (48_000, 2, "PCM_24")
    assert first.name.count("-") == 4 and first.name.endswith("-a.wav")
    header = (tiny_tau / "meta.csv").read_text().splitlines()[0]
    assert header == "filename\tscene_label\tidentifier\tsource_label"
    train = set(df.loc[df["fold1"] == "train", "location"])
    evaluate = set(df.loc[df["fold1"] == "evaluate", "location"])
    assert train and evaluate and not train & evaluate  # fold1 is location-disjoint
    assert (tiny_tau / "evaluation_setup" / "fold1_test.csv").read_text().startswith("filename\n")


def test_deterministic_from_seed_and_different_across_seeds():
    cfg = SynthConfig(duration=1.0, sample_rate=16_000)
    a = render_clip(cfg, "park", "lyon", 1, 0)
    assert np.array_equal(a, render_clip(cfg, "park", "lyon", 1, 0))
    assert not np.array_equal(a, render_clip(SynthConfig(duration=1.0, sample_rate=16_000, seed=1), "park", "lyon", 1, 0))
    assert a.shape == (16_000, 2) and np.abs(a).max() <= 1.0


def test_names_are_unique_and_in_the_tau_pattern():
    names = [row[0] for row in clip_names(SynthConfig())]
    assert len(names) == len(set(names)) == SynthConfig().n_clips
