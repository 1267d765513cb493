import numpy as np
import pytest
import torch

from napari_fcnseg.core import finetune as ft
from napari_fcnseg.core.finetune import (
    FinetuneSettings,
    annotated_slices,
    finetune,
    finetune_iter,
)
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume

FAST = FinetuneSettings(steps=6, batch_size=2, crop=64)


@pytest.fixture(scope="module")
def volume():
    return generate_volume("CT", (6, 64, 64), 11)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_annotated_slices_default_and_explicit_override():
    labels = np.zeros((5, 8, 8), np.uint8)
    labels[1, 2, 2] = 1
    labels[3] = 2
    assert annotated_slices(labels) == [1, 3]
    assert annotated_slices(labels[1]) == [0]


def test_only_annotated_slices_enter_the_loss(tiny_net, volume, monkeypatch):
    seen = []
    real = ft._training_arrays

    def spy(image, labels, slices, context, norm):
        seen.append(list(slices))
        return real(image, labels, slices, context, norm)

    monkeypatch.setattr(ft, "_training_arrays", spy)
    # slice 0 is all background but reviewed: it counts because it is listed
    res = finetune(tiny_net, volume.image, volume.labels, slices=[0, 3], settings=FAST,
                   class_names=CLASS_NAMES)
    assert seen == [[0, 3]] and res.slices == [0, 3]


def test_yields_steps_loss_and_dice_and_reports_before_after(tiny_net, volume):
    gen = finetune_iter(tiny_net, volume.image, volume.labels, slices=[2, 3],
                        settings=FAST, class_names=CLASS_NAMES)
    records = []
    try:
        while True:
            records.append(next(gen))
    except StopIteration as stop:
        res = stop.value
    steps = [r for r in records if r.loss is not None]
    assert [r.step for r in steps] == list(range(1, 7))
    assert all(np.isfinite(r.loss) and 0 <= r.dice <= 1 for r in steps)
    assert set(res.dice_before) == set(res.dice_after) == {"organ", "lesion"}
    assert res.steps == 6 and res.stopped is None
    md = res.metadata(parent="bundled")
    assert md["parent"] == "bundled" and md["num_annotated_slices"] == 2
    assert md["hyperparameters"]["steps"] == 6


def test_training_lowers_the_loss_on_the_annotated_slices(tiny_net, volume):
    gen = finetune_iter(tiny_net, volume.image, volume.labels, slices=[2, 3],
                        settings=FinetuneSettings(steps=30, batch_size=2, crop=64, lr=1e-2),
                        class_names=CLASS_NAMES)
    losses = [r.loss for r in gen if r.loss is not None]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def test_starting_model_is_never_modified_and_cancel_returns_nothing(tiny_net, volume):
    start = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    gen = finetune_iter(tiny_net, volume.image, volume.labels, settings=FAST)
    for _ in range(3):
        next(gen)
    gen.close()
    assert all(torch.equal(v, start[k]) for k, v in tiny_net.state_dict().items())
    res = finetune(tiny_net, volume.image, volume.labels, settings=FAST)
    assert not _same_weights(res.net, tiny_net)
    assert all(torch.equal(v, start[k]) for k, v in tiny_net.state_dict().items())


def test_different_label_set_gets_a_new_head(tiny_net, volume):
    labels = volume.labels.copy()
    labels[labels == 2] = 3  # the user has four classes
    names = ["background", "organ", "vessel", "tumour"]
    res = finetune(tiny_net, volume.image, labels, settings=FAST, class_names=names)
    assert res.net.config.num_classes == 4 and res.class_names == names
    torch.testing.assert_close(res.net.stem[0][0].weight.shape, tiny_net.stem[0][0].weight.shape)


def test_nan_loss_stops_and_restores_last_good_weights(tiny_net, volume, monkeypatch):
    calls = {"n": 0}
    real = ft.dice_ce_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(ft, "dice_ce_loss", poisoned)
    res = finetune(tiny_net, volume.image, volume.labels, settings=FAST)
    assert res.stopped is not None and "NaN" in res.stopped
    assert res.steps == 3
    assert all(torch.isfinite(p).all() for p in res.net.parameters())


def test_bad_inputs_are_refused_in_plain_words(tiny_net, volume):
    with pytest.raises(ValueError, match="shape"):
        finetune(tiny_net, volume.image, volume.labels[:, :-1])
    with pytest.raises(ValueError, match="no annotated"):
        finetune(tiny_net, volume.image, np.zeros_like(volume.labels))
    with pytest.raises(ValueError, match="integers"):
        finetune(tiny_net, volume.image, volume.labels.astype(float))
    with pytest.raises(ValueError, match="class 2"):
        finetune(tiny_net, volume.image, volume.labels, class_names=["background", "organ"])
    with pytest.raises(ValueError, match="outside"):
        finetune(tiny_net, volume.image, volume.labels, slices=[99])


def test_bundled_model_learns_an_unseen_contrast_from_three_slices():
    from napari_fcnseg.core.store import ModelStore

    bundled = ModelStore().load("bundled")
    mr = generate_volume("MR", (8, 256, 256), 200_002)
    inverted = (mr.image.max() - mr.image).astype(np.float32)  # a contrast it never saw
    annotated = [z for z in range(8) if (mr.labels[z] == 1).any()][1::2][:3]
    res = finetune(bundled.net, inverted, mr.labels, slices=annotated, class_names=CLASS_NAMES,
                   settings=FinetuneSettings(steps=40))
    assert res.dice_before["organ"] < 0.5
    assert res.dice_after["organ"] > res.dice_before["organ"] + 0.3
