import numpy as np
import pytest
import torch

from napari_fcnseg.core import finetune as ft
from napari_fcnseg.core import training
from napari_fcnseg.core.finetune import (
    CORRECTION_LR,
    CORRECTION_STEPS,
    NEW_CLASS_LR,
    NEW_CLASS_STEPS,
    FinetuneSettings,
    annotated_slices,
    finetune,
    finetune_iter,
    learns_new_classes,
    total_steps,
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

    def spy(image, labels, slices, context, norm, ignore_label):
        seen.append(list(slices))
        return real(image, labels, slices, context, norm, ignore_label)

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
    # the final model's 6 steps, then 6 for each of the two held-out folds
    assert [r.step for r in steps] == list(range(1, 19))
    assert all(r.total == 18 for r in steps)
    assert all(np.isfinite(r.loss) and 0 <= r.dice <= 1 for r in steps)
    assert set(res.dice_before) == set(res.dice_after) == {"organ", "lesion"}
    assert set(res.dice_train) == {"organ", "lesion"} and res.folds == 2
    assert res.steps == 6 and res.stopped is None
    md = res.metadata(parent="bundled")
    assert md["parent"] == "bundled" and md["num_annotated_slices"] == 2
    assert md["hyperparameters"]["steps"] == 6
    assert "held-out" in md["dice_after_measured_on"] and md["dice_train"] == res.dice_train


def test_training_lowers_the_loss_on_the_annotated_slices(tiny_net, volume):
    gen = finetune_iter(tiny_net, volume.image, volume.labels, slices=[2, 3],
                        settings=FinetuneSettings(steps=30, batch_size=2, crop=64, lr=1e-2),
                        class_names=CLASS_NAMES)
    losses = [r.loss for r in gen if r.loss is not None][:30]  # the final model's steps
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
    real = training.dice_ce_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(training, "dice_ce_loss", poisoned)
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
    # held-out: every annotated slice scored by a model that never trained on it
    assert res.dice_after["organ"] > res.dice_before["organ"] + 0.3
    assert res.improved is True


def test_a_class_new_to_the_model_is_predicted_on_its_training_slices():
    from napari_fcnseg.core.store import ModelStore

    bundled = ModelStore().load("bundled")
    ct = generate_volume("CT", (6, 160, 160), 31)
    labels = ct.labels.copy()
    labels[labels == 2] = 3  # the lesions become a class the bundled model has never heard of
    names = ["background", "organ", "vessel", "tumour"]
    annotated = [z for z in range(6) if (labels[z] == 3).any()][:3]
    res = finetune(bundled.net, ct.image, labels, slices=annotated, class_names=names,
                   base_class_names=bundled.class_names,
                   settings=FinetuneSettings(steps=40, crop=160, holdout_folds=0))
    assert res.settings["lr"] == NEW_CLASS_LR  # chosen by the task: a class to learn
    assert res.dice_before["tumour"] == 0.0  # the starting model cannot name it
    assert res.dice_train["tumour"] > 0.6
    assert res.dice_train["organ"] > 0.8


def test_steps_and_rate_left_to_the_task_follow_whether_a_class_is_new():
    auto = FinetuneSettings()
    assert auto.steps is None and auto.lr is None
    learn, correct = auto.for_task(True), auto.for_task(False)
    assert (learn.steps, learn.lr) == (NEW_CLASS_STEPS, NEW_CLASS_LR)
    assert (correct.steps, correct.lr) == (CORRECTION_STEPS, CORRECTION_LR)
    assert NEW_CLASS_STEPS > CORRECTION_STEPS and NEW_CLASS_LR > CORRECTION_LR
    given = FinetuneSettings(steps=7, lr=5e-4).for_task(True)  # what a user sets is kept
    assert (given.steps, given.lr) == (7, 5e-4)
    assert total_steps(auto, 3) == CORRECTION_STEPS * 4  # the final model + 3 folds
    assert total_steps(auto, 3, learns_new_classes=True) == NEW_CLASS_STEPS * 4
    base = ["background", "organ", "lesion"]
    assert not learns_new_classes([0, 2], base, base, 3)
    assert learns_new_classes([0, 1], ["background", "liver"], base, 3)  # matched by name
    assert not learns_new_classes([0, 1], ["background", "liver"], None, 3)  # by index
    assert learns_new_classes([3], [*base, "vessel"], None, 3)
    assert not learns_new_classes([0, 1], [*base, "vessel"], base, 3)  # named, not drawn


def test_head_fitting_alone_makes_a_new_class_emerge():
    from napari_fcnseg.core.head_init import fit_head
    from napari_fcnseg.core.nets import replace_head
    from napari_fcnseg.core.store import ModelStore

    net = ModelStore().load("bundled").net
    ct = generate_volume("CT", (4, 160, 160), 5)
    z = int(np.argmax([(ct.labels[k] == 2).sum() for k in range(4)]))  # ~170 lesion pixels
    xs, ys, valid = ft._training_arrays(ct.image, ct.labels, [z], 1, ft.fit_normalizer(ct.image),
                                        None)
    ys = torch.where(ys == 2, 3, ys)
    replace_head(net, 4)
    fit_head(net, xs, ys, valid, [2, 3], np.random.default_rng(0))
    with torch.no_grad():
        pred = net.eval()(xs).argmax(1)
    hit = ((pred == 3) & (ys == 3)).sum() * 2 / ((pred == 3).sum() + (ys == 3).sum())
    assert hit > 0.5


def test_partial_labels_keep_unannotated_pixels_out_of_the_loss(tiny_net, volume, monkeypatch):
    ignore = 255
    labels = np.full_like(volume.labels, ignore)
    labels[2, 10:20, 10:20] = volume.labels[2, 10:20, 10:20]  # a few strokes
    labels[3, 30:34, :] = 0  # an explicit background stroke
    assert ft.annotated_slices(labels, ignore) == [2, 3]
    fractions = []
    real = training.dice_ce_loss

    def spy(logits, target, valid, *args, **kwargs):
        fractions.append(float(valid.float().mean()))
        return real(logits, target, valid, *args, **kwargs)

    monkeypatch.setattr(training, "dice_ce_loss", spy)
    res = finetune(tiny_net, volume.image, labels, ignore_label=ignore, settings=FAST,
                   class_names=CLASS_NAMES)
    assert res.slices == [2, 3]
    assert fractions and max(fractions) < 0.3  # strokes cover under 10 % of the two slices
    _, _, valid = ft._training_arrays(volume.image, labels, [2, 3], 1,
                                      ft.fit_normalizer(volume.image), ignore)
    assert valid.numpy().tolist() == (labels[[2, 3]] != ignore).tolist()


def test_held_out_folds_never_train_on_the_slice_they_score(tiny_net, monkeypatch):
    from napari_fcnseg.core import holdout

    vol = generate_volume("CT", (6, 64, 64), 3)
    trained_on = []
    real = holdout.train_iter

    def spy(model, xs, ys, valid, *args, **kwargs):
        trained_on.append({round(float(x.sum()), 3) for x in xs})
        return (yield from real(model, xs, ys, valid, *args, **kwargs))

    monkeypatch.setattr(holdout, "train_iter", spy)
    res = finetune(tiny_net, vol.image, vol.labels, slices=[0, 2, 4], settings=FAST,
                   class_names=CLASS_NAMES)
    assert res.folds == 3 and len(trained_on) == 3
    norm = ft.fit_normalizer(vol.image)
    xs, _, _ = ft._training_arrays(vol.image, vol.labels, [0, 2, 4], 1, norm, None)
    sums = [round(float(x.sum()), 3) for x in xs]
    for held, seen in zip(holdout.make_folds(3, 3), trained_on, strict=True):
        assert not {sums[i] for i in held} & seen
        assert len(seen) == 2


def test_one_annotated_slice_gives_no_held_out_estimate(tiny_net, volume):
    res = finetune(tiny_net, volume.image, volume.labels, slices=[3], settings=FAST,
                   class_names=CLASS_NAMES)
    assert res.dice_after == {} and res.folds == 0 and res.improved is None
    assert "no held-out estimate" in res.heldout_description
    assert res.metadata("bundled")["improved"] is None


def test_a_class_drawn_on_one_slice_only_has_no_held_out_estimate(tiny_net, volume):
    labels = volume.labels.copy()
    labels[[2, 4]] = np.where(labels[[2, 4]] == 2, 1, labels[[2, 4]])  # lesion only on slice 0
    res = finetune(tiny_net, volume.image, labels, slices=[0, 2, 4], settings=FAST,
                   class_names=CLASS_NAMES)
    # the fold that holds out slice 0 never saw a lesion: its lesion score would say nothing
    # of the final model, which did
    assert set(res.dice_after) == {"organ"} and res.unestimated == ["lesion"]
    assert "none for lesion" in res.heldout_description
    assert res.improved == (res.dice_after["organ"] > res.dice_before["organ"])
    assert res.metadata("bundled")["dice_after_missing"] == ["lesion"]
    labels[2] = volume.labels[2]  # on a second slice, a fold that trained on it can score it
    res = finetune(tiny_net, volume.image, labels, slices=[0, 2, 4], settings=FAST,
                   class_names=CLASS_NAMES)
    assert set(res.dice_after) == {"organ", "lesion"} and res.unestimated == []


def test_a_class_on_no_annotated_slice_is_still_scored_held_out(tiny_net, volume):
    labels = np.where(volume.labels == 2, 1, volume.labels)  # no lesion anywhere
    res = finetune(tiny_net, volume.image, labels, slices=[0, 3], settings=FAST,
                   class_names=CLASS_NAMES)
    # every model, folds and final alike, learns that these slices hold no lesion
    assert set(res.dice_after) == {"organ", "lesion"} and res.unestimated == []


def test_pooled_dice_leaves_out_a_class_no_fold_counts():
    from napari_fcnseg.core.holdout import pooled_dice

    names = ["background", "organ", "lesion", "cyst"]
    counts = [{1: (3, 8), 3: (0, 0)}, {1: (1, 2)}]
    assert pooled_dice(counts, names) == {"organ": 0.8, "cyst": 1.0}


def test_improved_compares_held_out_dice_with_the_starting_model(tiny_net):
    worse = ft.FinetuneResult(tiny_net, CLASS_NAMES, [1, 2], {"organ": 0.9, "lesion": 0.5},
                              {"organ": 0.8, "lesion": 0.5}, {"organ": 1.0, "lesion": 1.0}, 6,
                              folds=2)
    assert worse.improved is False  # perfect training-slice Dice does not make it better
    better = ft.FinetuneResult(tiny_net, CLASS_NAMES, [1, 2], {"organ": 0.7, "lesion": 0.5},
                               {"organ": 0.8, "lesion": 0.5}, {"organ": 0.8, "lesion": 0.5}, 6,
                               folds=2)
    assert better.improved is True


def test_the_trained_model_is_handed_out_before_its_held_out_check(tiny_net, volume):
    records = []
    gen = finetune_iter(tiny_net, volume.image, volume.labels, slices=[0, 2, 4], settings=FAST,
                        class_names=CLASS_NAMES)
    try:
        while True:
            records.append(next(gen))
    except StopIteration as stop:
        final = stop.value
    ready = [i for i, r in enumerate(records) if r.result is not None]
    assert len(ready) == 1
    folds = [i for i, r in enumerate(records) if r.message.startswith("held-out")]
    assert folds and ready[0] < folds[0]  # before the first step of the check
    early = records[ready[0]].result
    assert early.net is final.net  # the same model: the check only measures it
    assert early.dice_after == {} and early.improved is None and early.unestimated == []
    assert "has not finished" in early.heldout_description
    assert "has not finished" in early.metadata("tiny")["dice_after_measured_on"]
    assert final.pending is None and final.dice_after and final.improved is not None
    # without a check there is nothing to hand out early
    alone = finetune_iter(tiny_net, volume.image, volume.labels, slices=[0, 2, 4],
                          settings=FinetuneSettings(steps=2, batch_size=2, crop=64,
                                                    holdout_folds=0), class_names=CLASS_NAMES)
    assert all(r.result is None for r in alone)
