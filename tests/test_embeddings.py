"""The frozen-backbone cache: same numbers as the full path, keyed, atomic, reused; the device loader."""

from __future__ import annotations

import pytest
import torch

from asc.data import augment
from asc.data.augment import ViewSpec
from asc.data.clips import ClipBank
from asc.model.embeddings import EmbeddingCacheConfig, EmbeddingLoader, build_or_load, train_starts, training_views
from asc.model.module import SceneClassifier

W, S, FRAMES = 20, 32, 50  # window frames, network input side, clip (image) width
CLIP = dict(frames=FRAMES, seconds=49.0, pad="none")  # hops of 1 s


def _module(seed: int = 0, freeze: bool = True, **views) -> SceneClassifier:
    torch.manual_seed(seed)
    model = dict(backbone="small_cnn", pretrained=False, freeze=freeze, channels=(4, 8), hidden=(8,), dropout=0.0)
    return SceneClassifier(["a", "b", "c"], model, views=dict(window_frames=W, size=S, **views), clip=CLIP).eval()


def _images(n: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {p: torch.randint(0, 256, (n + i, 24, FRAMES), dtype=torch.uint8, generator=g) for i, p in enumerate(("train", "val", "test"))}


def _banks(images: dict[str, torch.Tensor]) -> dict[str, ClipBank]:
    return {p: ClipBank.from_images(list(x.numpy()), [0] * len(x), FRAMES) for p, x in images.items()}


def _build(module, images, root, mask=0.0, **cfg):
    settings = EmbeddingCacheConfig(enabled=True, **{"dtype": "float32", **cfg})
    views = ViewSpec(**{**module.hparams.views, "mask": mask})
    outputs, real, cache, computed = build_or_load(module.net, _banks(images), settings, views, root=root,
                                                   spec_key="spec", backbone="small_cnn")
    return outputs, cache, computed, real


def test_head_gets_exactly_the_backbone_outputs_of_the_full_path(tmp_path):
    module, images = _module(), _images()
    banks, _, computed, real = _build(module, images, tmp_path, positions=3)
    assert real["val"].all() and real["val"].shape == (6, 1)
    assert computed and banks["train"].shape[:2] == (5, 3) and banks["val"].shape[:2] == (6, 1)
    starts = train_starts(FRAMES, W, 3)
    assert starts.tolist() == [0, 15, 30]  # first to last frame, evenly spaced
    with torch.no_grad():
        for k, start in enumerate(starts.tolist()):
            x = images["train"]
            full = module(augment.to_network(augment.resize(augment.crop(x, torch.full((len(x),), start), W), S)))
            cached = module(banks["train"][:, k])
            assert torch.allclose(full, cached, atol=1e-5), (k, (full - cached).abs().max())
        for part in ("val", "test"):  # evaluation: the full path's centre window
            full = module.predict_proba(augment.eval_batch(images[part], W, S))
            assert torch.allclose(full, module.predict_proba(banks[part]), atol=1e-6)


def test_masked_views_are_a_fixed_finite_set(tmp_path):
    module, images = _module(), _images()
    banks, cache, _, _ = _build(module, images, tmp_path / "a", mask=0.3, positions=2, masks=3)
    assert banks["train"].shape[:2] == (5, 6)  # positions x masks
    again, _, computed, _ = _build(module, images, tmp_path / "b", mask=0.3, positions=2, masks=3)
    assert computed and torch.equal(banks["train"], again["train"])  # the set is a function of the key
    # view k * masks + m is window k with its m-th band: recompute it on the full path
    gen = torch.Generator().manual_seed(int(cache.key[:15], 16))
    views = ViewSpec(W, S, mask=0.3)
    x = training_views(_banks(images)["train"], torch.arange(5), views, positions=2, masks=3, generator=gen)
    with torch.no_grad():
        assert torch.allclose(module.net.embed(x.flatten(0, 1)).view(5, 6, -1), banks["train"], atol=1e-5)
    grey = augment.to_network(torch.full((1, 1, 1), augment.MASK_FILL))[0, 0, 0, 0]
    banded = (x[:, :, 0] == grey).all(-1).any(-1)  # [B, V]: a row of the view is mid-grey across the width
    assert banded.float().mean() > 0.5  # band heights are uniform in 0..9 rows: most views have one
    unmasked = _build(module, images, tmp_path / "c", positions=2)[0]
    assert not torch.allclose(unmasked["train"][:, 0], banks["train"][:, 0])


def test_cache_is_keyed_written_atomically_and_reused(tmp_path):
    module, images = _module(), _images()
    banks, cache, computed, _ = _build(module, images, tmp_path, positions=2)
    assert computed and (cache.dir / "info.json").is_file()
    assert not [p for p in cache.dir.iterdir() if p.name.endswith(".tmp")]
    again, same, computed, _ = _build(module, images, tmp_path, positions=2)
    assert not computed and same.dir == cache.dir and torch.equal(again["train"], banks["train"])
    other_k = _build(module, images, tmp_path, positions=3)[1]
    with torch.no_grad():
        module.net.backbone.features[0].weight.add_(0.01)
    other_weights = _build(module, images, tmp_path, positions=2)[1]
    images["val"][0, 0, 0] ^= 1  # one pixel of one validation clip
    other_clips = _build(module, images, tmp_path, positions=2)[1]
    assert len({cache.dir, other_k.dir, other_weights.dir, other_clips.dir}) == 4
    half = _build(_module(), _images(), tmp_path, positions=2, dtype="float16")[0]
    assert half["train"].dtype == torch.float16
    assert torch.allclose(half["train"].float(), banks["train"], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("damage", ["flip", "cut", "info"])
def test_a_damaged_entry_is_computed_again_not_trained_on(tmp_path, caplog, damage):
    """A cache entry whose bytes changed (a flipped bit, an array cut short, a garbled info.json) is found when it is
    loaded, said once, computed again into the same folder, and gives the original numbers."""
    module, images = _module(), _images()
    first, cache, computed, _ = _build(module, images, tmp_path, positions=2)
    assert computed
    train = cache.dir / "train.npy"
    good = train.read_bytes()
    if damage == "flip":
        train.write_bytes(good[:-100] + bytes([good[-100] ^ 1]) + good[-99:])
    elif damage == "cut":
        train.write_bytes(good[: len(good) // 2])
    else:
        (cache.dir / "info.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="asc.model.embeddings"):
        again, same, computed, _ = _build(module, images, tmp_path, positions=2)
    assert computed and same.dir == cache.dir
    assert torch.equal(again["train"], first["train"]) and train.read_bytes() == good
    assert [r.getMessage().count("computing it again") for r in caplog.records] == [1]
    assert not _build(module, images, tmp_path, positions=2)[2]  # repaired: loaded from then on


def test_jobs_needing_one_entry_at_once_compute_it_once(tmp_path, monkeypatch):
    import threading
    import time

    from asc.model import embeddings

    compute = embeddings._compute

    def slow_compute(*args, **kwargs):  # long enough for the other job to find the entry missing too
        time.sleep(0.5)
        return compute(*args, **kwargs)

    monkeypatch.setattr(embeddings, "_compute", slow_compute)
    images, results = _images(), []
    modules = [_module(), _module()]  # the same weights: the same entry
    jobs = [threading.Thread(target=lambda m=m: results.append(_build(m, images, tmp_path, positions=2))) for m in modules]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert sorted(computed for _, _, computed, _ in results) == [False, True]  # one computed it, the other loaded it
    assert torch.equal(results[0][0]["train"], results[1][0]["train"])


def test_cache_needs_a_frozen_backbone_and_sane_settings(tmp_path):
    with pytest.raises(ValueError, match="frozen"):
        _build(_module(freeze=False), _images(), tmp_path)
    with pytest.raises(ValueError, match="positions"):
        EmbeddingCacheConfig(positions=0)
    with pytest.raises(ValueError, match="dtype"):
        EmbeddingCacheConfig(dtype="int8")
    cfg = EmbeddingCacheConfig(enabled=True, positions=4, masks=0)
    assert cfg.applies(0.0) and not cfg.applies(0.1)  # masks=0: masked runs take the full path
    assert EmbeddingCacheConfig(enabled=True, positions=4, masks=2).views(0.1) == 8


def test_device_loader_serves_every_sample_once_and_picks_views():
    torch.manual_seed(0)
    x = torch.arange(10).view(10, 1).repeat(1, 3) * 10 + torch.arange(3)  # [N=10, V=3]: value = 10 * i + view
    y = torch.arange(10)
    loader = EmbeddingLoader(x, y, batch_size=4, shuffle=True, pick_view=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert sorted(ys.tolist()) == list(range(10)) and ys.tolist() != list(range(10))
    assert torch.equal(xs // 10, ys) and set((xs % 10).tolist()) <= {0, 1, 2}
    views = torch.cat([torch.cat([b[0] for b in loader]) % 10 for _ in range(20)])
    assert set(views.tolist()) == {0, 1, 2}
    ordered = torch.cat([b[1] for b in EmbeddingLoader(x, y, 4, shuffle=False)])
    assert ordered.tolist() == list(range(10))


def test_grouped_loader_serves_the_same_batches_in_the_same_order():
    x, y = torch.randn(10, 2, 3), torch.arange(10)
    torch.manual_seed(0)
    single = list(EmbeddingLoader(x, y, batch_size=3, shuffle=True, pick_view=True))
    torch.manual_seed(0)
    grouped = EmbeddingLoader(x, y, batch_size=3, shuffle=True, pick_view=True, group=3)
    items = list(grouped)
    assert len(grouped) == len(items) == 2 and [len(item) for item in items] == [3, 1]
    flat = [batch for item in items for batch in item]
    assert len(flat) == len(single) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(flat, single))


def _fit_head(steps_per_call: int, epochs: int = 2, logger=False,
              callbacks=()) -> tuple[SceneClassifier, dict[str, float], int]:
    import lightning as L

    from asc.model.embeddings import EmbeddingData

    torch.manual_seed(0)
    model = dict(backbone="small_cnn", pretrained=False, freeze=True, channels=(4, 8), hidden=(16,), dropout=0.5)
    module = SceneClassifier(["a", "b", "c"], model, views=dict(window_frames=W, size=S), clip=CLIP, inputs="embeddings",
                             steps_per_call=steps_per_call)
    dim = module.net.backbone(torch.zeros(1, 3, S, S)).flatten(1).shape[1]
    g = torch.Generator().manual_seed(1)
    banks = {p: torch.randn(n, v, dim, generator=g) for p, n, v in (("train", 45, 2), ("val", 9, 1), ("test", 9, 1))}
    labels = {p: torch.randint(0, 3, (len(b),), generator=g) for p, b in banks.items()}
    data = EmbeddingData(banks, labels, batch_size=4, steps_per_call=steps_per_call)
    L.seed_everything(7)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, enable_checkpointing=bool(callbacks),
                        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(module, datamodule=data)
    return module, {k: float(v) for k, v in trainer.callback_metrics.items()}, trainer.global_step


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call", [3, 16])
def test_several_steps_per_call_make_the_same_updates(steps_per_call):
    one, metrics_one, steps_one = _fit_head(1)
    many, metrics_many, steps_many = _fit_head(steps_per_call)
    assert steps_one == steps_many == 2 * 12  # 45 samples in batches of 4, two epochs: one step per batch
    for (name, a), b in zip(one.state_dict().items(), many.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert metrics_one.keys() == metrics_many.keys() and metrics_one.keys() >= {"train/loss", "train/acc", "val/acc"}
    assert all(abs(metrics_one[k] - metrics_many[k]) < 1e-6 for k in metrics_one)
    head_moved = not torch.allclose(_fit_head(1, epochs=0)[0].net.head[0].weight, one.net.head[0].weight)
    assert head_moved


def test_several_steps_per_call_need_the_embedding_inputs():
    model = dict(backbone="small_cnn", pretrained=False, freeze=True, channels=(4, 8), hidden=(8,))
    with pytest.raises(ValueError, match="steps_per_call"):
        SceneClassifier(["a", "b"], model, views=dict(window_frames=W, size=S), clip=CLIP, steps_per_call=4)
    with pytest.raises(ValueError, match="steps_per_call"):
        EmbeddingCacheConfig(steps_per_call=0)


def test_epoch_loss_is_the_per_sample_mean_when_the_last_batch_is_smaller():
    import torch.nn.functional as F

    torch.manual_seed(0)
    module = SceneClassifier(["a", "b"], dict(backbone="small_cnn", pretrained=False, channels=(4, 8), hidden=(8,), dropout=0.0),
                             views=dict(window_frames=W, size=S), clip=CLIP, inputs="embeddings")
    dim = module.net.head[0].in_features
    x, y = torch.randn(5, dim), torch.tensor([0, 1, 1, 0, 1])
    for lo, hi in ((0, 4), (4, 5)):  # a batch of 4, then a batch of 1
        module._loss(x[lo:hi], y[lo:hi])
    expected = F.cross_entropy(module(x), y)  # the mean over the 5 samples, not over the 2 batches
    assert module.train_loss.compute().item() == pytest.approx(expected.item(), rel=1e-5)


def test_reference_crop_views_are_the_full_paths(tmp_path):
    """With ``crop="reference"`` the cache's views are :mod:`asc.data.augment`'s reference views at fixed positions."""
    images = _images()
    resized = augment.reference_width(FRAMES, W, 1.0)  # hops of 1 s: the window is W s
    module = _module(crop="reference", band="reference", eval_windows="cover", resized=resized)
    banks, cache, _, _ = _build(module, images, tmp_path, positions=3)
    assert cache.fields["views"]["crop"] == "reference" and cache.fields["views"]["resized"] == resized
    starts = train_starts(FRAMES, W, 3, crop="reference")
    assert starts.tolist() == [0.0, 0.5, 1.0]
    n_cover = augment.eval_positions("cover", resized, images["val"].shape[1]).numel()
    assert banks["train"].shape[:2] == (5, 3) and banks["val"].shape[:2] == (6, n_cover) and n_cover > 1
    with torch.no_grad():
        x = images["train"]
        for k, u in enumerate(starts.tolist()):
            full = module(augment.to_network(augment.reference_views(x, torch.full((len(x),), u), resized, S)))
            assert torch.allclose(full, module(banks["train"][:, k]), atol=1e-5)
        full = module.predict_proba(augment.eval_batch(images["val"], W, S, "cover", crop="reference", resized=resized))
        assert torch.allclose(full, module.predict_proba(banks["val"]), atol=1e-6)


def test_recordings_of_any_length_the_cache_matches_the_full_path(tmp_path):
    """Recordings longer than a clip: training positions spread over the whole recording, evaluation over the clips
    covering it (and only those: the padding views are marked unreal) -- the numbers of the full path."""
    from asc.data.datamodule import ClipBatches

    module = _module()
    g = torch.Generator().manual_seed(3)
    lengths = {"train": [50, 120, 75], "val": [50, 170], "test": [101]}
    images = {p: [torch.randint(0, 256, (24, n), dtype=torch.uint8, generator=g).numpy() for n in ns]
              for p, ns in lengths.items()}
    banks = {p: ClipBank.from_images(x, [1] * len(x), FRAMES) for p, x in images.items()}
    settings = EmbeddingCacheConfig(enabled=True, dtype="float32", positions=3)
    outputs, real, _, _ = build_or_load(module.net, banks, settings, module.views, root=tmp_path, spec_key="s",
                                        backbone="small_cnn")
    assert real["val"].tolist() == [[True, False, False, False], [True, True, True, True]]  # 1 and 4 clips
    assert real["test"].tolist() == [[True, True, True]]
    with torch.no_grad():
        last = torch.tensor(images["train"][1][:, 120 - FRAMES + 30:120 - FRAMES + 30 + W])  # position 3 of 3
        full = module(augment.to_network(augment.resize(last[None], S)))
        assert torch.allclose(full, module(outputs["train"][1:2, 2]), atol=1e-5)
        for part in ("val", "test"):
            clips, y, valid = ClipBatches(banks[part], train=False).__getitems__(list(range(len(banks[part]))))
            x, valid = module.views.eval_clips(clips, valid, module.net.norm)
            full = module.predict_proba(x, valid)
            assert torch.allclose(full, module.predict_proba(outputs[part], real[part]), atol=1e-6)


def test_an_epochs_training_metrics_reach_the_logger_before_its_checkpoint_is_saved():
    """A run killed right after last.ckpt is written resumes at the next epoch: the epoch's train/loss and train/acc
    must already be logged then (Lightning itself logs them only after the checkpoint callbacks)."""
    from lightning.pytorch.callbacks import Checkpoint
    from lightning.pytorch.loggers import Logger

    class Recorder(Logger):
        name, version = "recorder", 0
        steps: dict[str, list[int]] = {}

        def log_metrics(self, metrics, step=None):
            for k in metrics:
                self.steps.setdefault(k, []).append(step)

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    class SeenAtCheckpoint(Checkpoint):  # where ModelCheckpoint saves last.ckpt: the checkpoint callbacks' turn
        seen: list[int] = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append(len(recorder.steps.get("train/loss", [])))

    recorder, probe = Recorder(), SeenAtCheckpoint()
    _fit_head(1, epochs=3, logger=recorder, callbacks=[probe])
    assert probe.seen == [1, 2, 3]  # each epoch's value already sent when its checkpoint would be written
    assert len(recorder.steps["train/acc"]) == 3 and recorder.steps["train/loss"] == recorder.steps["train/acc"]
    assert recorder.steps["train/loss"] == [11, 23, 35]  # the step Lightning gives epoch-end metrics (batches - 1)
