import numpy as np
import pytest

from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.review import METADATA_KEY, ReviewState
from napari_fcnseg.core.store import BUILT_IN, ModelStore
from napari_fcnseg.widgets.finetune import (
    CANCELLED_MESSAGE,
    FinetuneCancelled,
    FinetuneError,
    FinetuneWidget,
)
from napari_fcnseg.widgets.segment import SegmentWidget
from napari_fcnseg.widgets.session import models_changed

pytestmark = pytest.mark.gui
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def phantom():
    return generate_volume("CT", (6, 64, 64), seed=5)


def _wait(qtbot, future):
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    return future


def _widget(viewer, steps=3, heldout=False):
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.steps_spin.setValue(steps)
    widget.heldout_check.setChecked(heldout)  # the held-out check has tests of its own
    return widget


def _set_slice(labels, k, values):
    """Write ``values`` into slice ``k`` through the Labels editing API (with undo history)."""
    changed = np.nonzero(labels.data[k] != values)
    labels.data_setitem((np.full(changed[0].size, k), *changed), values[changed])


def test_full_loop_segment_correct_finetune_resegment(qtbot, make_napari_viewer, tiny_model,
                                                      phantom):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image, name="ct")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    widget = _widget(viewer)
    assert _wait(qtbot, seg.segment("volume")).result() == list(range(6))
    labels = seg.labels_layer
    assert widget.labels_layer is labels and widget.image_layer is image
    assert widget.model_combo.currentText() == "tiny"
    assert widget.name_edit.text() == "ct-ft"
    assert widget.training_slices() == [] and widget.slice_list.count() == 0

    # correct slice 1 to the truth, paint a lesion into slice 4, accept slice 2 as it is
    _set_slice(labels, 1, phantom.labels[1])
    labels.selected_label, labels.brush_size = 2, 9
    before_paint = labels.data[4].copy()
    labels.paint((4, 32, 32), 2)
    assert not np.array_equal(labels.data[4], before_paint)
    qtbot.waitUntil(lambda: widget.slice_list.count() == 2, timeout=5000)  # auto-refresh
    viewer.dims.set_current_step(0, 2)
    assert widget.mark_reviewed() == [2]
    widget.mark_reviewed([1, 4])
    assert widget.mark_reviewed([3]) == [3] and widget.unmark([3]) == [3]
    assert widget.slice_status() == {1: "edited + reviewed", 2: "reviewed",
                                     4: "edited + reviewed"}
    assert [widget.slice_list.item(i).text() for i in range(3)] == [
        "slice 1 — edited + reviewed", "slice 2 — reviewed", "slice 4 — edited + reviewed"]
    assert ReviewState.from_metadata(labels.metadata[METADATA_KEY]).reviewed == {1, 2, 4}
    widget.go_to_slice(4)
    assert viewer.dims.current_step[0] == 4 and widget.current_slice() == 4

    edited = labels.data.copy()
    name = _wait(qtbot, widget.finetune()).result()
    assert name == "ct-ft" and not widget.busy
    np.testing.assert_array_equal(labels.data, edited)
    meta = ModelStore().load(name).metadata
    assert meta["parent"] == "tiny"
    assert meta["slices"] == [1, 2, 4] and meta["num_annotated_slices"] == 3
    assert meta["classes"] == ["background", "organ", "lesion"]
    assert meta["steps"] == 3 and meta["image"] == "ct"
    assert meta["dice_after"] == {} and "no held-out" in meta["dice_after_measured_on"]
    assert set(meta["dice_train"]) == {"organ", "lesion"} and meta["improved"] is None
    assert widget.loss_plot.steps == [1, 2, 3]
    assert all(np.isfinite(widget.loss_plot.losses))
    assert widget.progress_bar.value() == 3
    assert "starting" in widget.result_label.text() and "organ" in widget.result_label.text()
    assert "training" in widget.result_label.text()
    assert seg.model_name == name  # the Segment widget now uses the new model
    assert widget.model_combo.findText(name) >= 0
    assert widget.name_edit.text() == "ct-ft-2"
    assert widget.resegment_button.isEnabled()

    written = _wait(qtbot, widget.resegment_unreviewed()).result()
    assert written == [0, 3, 5]
    for k in (1, 2, 4):  # edited and reviewed slices are byte-for-byte unchanged
        assert labels.data[k].tobytes() == edited[k].tobytes()
    expected = predict(ModelStore().load(name).net, phantom.image, slices=[0, 3, 5],
                       normalizer=fit_normalizer(phantom.image)).labels
    np.testing.assert_array_equal(labels.data[[0, 3, 5]], expected[[0, 3, 5]])
    state = ReviewState.from_metadata(labels.metadata)
    assert state.model == name and state.reviewed == {1, 2, 4}


def test_hand_drawn_labels_on_scaled_volume(qtbot, make_napari_viewer, tiny_model, make_model,
                                            phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="scan", scale=(3.0, 0.5, 0.5), translate=(7, 0, 0))
    data = np.zeros(phantom.labels.shape, np.int32)
    data[3] = phantom.labels[3]
    labels = viewer.add_labels(data, name="my labels", scale=(3.0, 0.5, 0.5), translate=(7, 0, 0))
    widget = _widget(viewer)
    widget.image_layer = "scan"
    assert widget.labels_layer is labels
    assert widget.slice_status() == {3: "edited"}  # no review state: non-empty = edited
    assert METADATA_KEY not in labels.metadata
    widget.go_to_slice(5)
    assert widget.current_slice() == 5
    assert widget.mark_reviewed() == [5]  # an empty slice that is correct as it is
    assert ReviewState.from_metadata(labels.metadata).reviewed == {5}
    assert widget.training_slices() == [3, 5]
    labels.undo()  # no undo history yet: nothing changes
    _set_slice(labels, 0, phantom.labels[0])
    qtbot.waitUntil(lambda: widget.slice_list.count() == 3, timeout=5000)
    labels.undo()
    qtbot.waitUntil(lambda: widget.slice_list.count() == 2, timeout=5000)
    widget.slice_list.item(1).setSelected(True)
    widget.unmark_button.click()
    assert widget.training_slices() == [3]
    # a name or base model the user chose survives other layers coming and going
    make_model("other")
    models_changed.emit()
    widget.name_edit.setText("my-model")
    widget.model_combo.setCurrentText("other")
    viewer.add_points(np.zeros((1, 3)))
    assert widget.name_edit.text() == "my-model" and widget.model_combo.currentText() == "other"


def test_the_chosen_images_own_labels_win_over_other_labels(qtbot, make_napari_viewer,
                                                            tiny_model, phantom):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image, name="ct")
    truth = viewer.add_labels(phantom.labels.copy(), name="ground truth")
    widget = _widget(viewer)
    assert widget.labels_layer is truth  # the only labels of the image's shape, for now
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    _wait(qtbot, seg.segment("volume"))
    labels = seg.labels_layer
    assert labels.name == "ct labels"
    assert widget.labels_layer is labels and widget.image_layer is image

    # an explicit choice stays while other labels come, go and get renamed
    widget.labels_layer = truth
    viewer.add_labels(np.zeros_like(phantom.labels), name="scratch")
    truth.name = "truth"
    assert widget.labels_layer is truth and widget.labels_combo.currentText() == "truth"
    widget.labels_combo.setCurrentText("scratch")  # as when picked in the combo box
    viewer.add_points(np.zeros((1, 3)))
    assert widget.labels_layer.name == "scratch"
    # choosing the image again reviews its own labels; so does removing the chosen layer
    widget.image_layer = image
    assert widget.labels_layer is labels
    widget.labels_layer = truth
    viewer.layers.remove(truth)
    assert widget.labels_layer is labels

    # a labels layer chosen by hand brings its own image along
    other = viewer.add_image(phantom.image[:, :32], name="mr")
    mr_labels = viewer.add_labels(np.zeros(other.data.shape, np.uint8), name="mr labels")
    assert widget.image_layer is image and widget.labels_layer is labels
    widget.labels_layer = mr_labels
    assert widget.image_layer is other
    widget.image_layer = image
    assert widget.labels_layer is labels


def test_a_new_widget_prefers_the_images_own_labels(qtbot, make_napari_viewer, phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    labels = viewer.add_labels(phantom.labels.copy(), name="ct labels")
    viewer.add_labels(phantom.labels.copy(), name="ground truth")  # on top
    widget = FinetuneWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.labels_layer is labels


def test_cancel_saves_nothing_and_keeps_labels(qtbot, make_napari_viewer, tiny_model, phantom,
                                               notifications):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    labels = viewer.add_labels(phantom.labels.copy(), name="ct labels")
    widget = _widget(viewer, steps=10_000)
    before, models = labels.data.copy(), ModelStore().names()
    future = widget.finetune()
    assert widget.busy and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(widget.loss_plot) >= 1, timeout=TIMEOUT)
    widget.cancel_button.click()
    _wait(qtbot, future)
    assert isinstance(future.exception(), FinetuneCancelled)
    assert ("info", CANCELLED_MESSAGE + ".") in notifications
    assert ModelStore().names() == models
    np.testing.assert_array_equal(labels.data, before)
    assert not widget.busy and widget.finetune_button.isEnabled()
    assert not widget.resegment_button.isEnabled()
    assert len(widget.loss_plot) < 10_000

    # cancelling from napari's activity dock stops the worker the same way
    future = widget.finetune()
    qtbot.waitUntil(lambda: len(widget.loss_plot) >= 1, timeout=TIMEOUT)
    widget.job.worker.quit()  # as napari's activity dock does
    assert isinstance(_wait(qtbot, future).exception(), FinetuneCancelled)
    assert ModelStore().names() == models and not widget.busy


def test_failure_in_worker_is_a_notification(qtbot, make_napari_viewer, tiny_model, phantom,
                                             notifications, monkeypatch):
    def broken(*args, **kwargs):
        yield from ()
        raise RuntimeError("out of memory")

    monkeypatch.setattr("napari_fcnseg.core.finetune.finetune_iter", broken)
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    viewer.add_labels(phantom.labels.copy(), name="ct labels")
    widget = _widget(viewer)
    future = _wait(qtbot, widget.finetune())
    assert isinstance(future.exception(), FinetuneError)
    assert notifications[-1] == ("error", "Fine-tuning failed: out of memory")
    assert ModelStore().names() == [*BUILT_IN, "tiny"]
    assert not widget.busy


def test_a_broken_model_file_is_a_notification(qtbot, make_napari_viewer, tiny_model, phantom,
                                               notifications):
    store = ModelStore()
    (store.root / "tiny.pt").write_bytes(b"not a checkpoint")  # damaged after listing
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    labels = viewer.add_labels(phantom.labels.copy(), name="ct labels")
    before = labels.data.copy()
    widget = _widget(viewer)
    widget.model_combo.setCurrentText("tiny")
    future = _wait(qtbot, widget.finetune())
    assert isinstance(future.exception(), FinetuneError)
    assert notifications[-1][0] == "error" and "tiny" in notifications[-1][1]
    assert ModelStore().names() == [*BUILT_IN, "tiny"]
    np.testing.assert_array_equal(labels.data, before)


def test_single_2d_image_with_an_extra_class(qtbot, make_napari_viewer, tiny_model, phantom,
                                             notifications):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image[2], name="slice")
    data = phantom.labels[2].astype(np.uint8)
    data[:8, :8] = 3  # a class the 3-class model does not know
    labels = viewer.add_labels(data, name="slice labels")
    widget = _widget(viewer, steps=2)
    assert widget.slice_list.item(0).text() == "the image — edited"
    assert widget.mark_reviewed() == [0] and widget.training_slices() == [0]
    name = _wait(qtbot, widget.finetune()).result()
    assert any(level == "info" and "new output layer" in text for level, text in notifications)
    meta = ModelStore().load(name).metadata
    assert meta["classes"] == ["background", "organ", "lesion", "class 3"]
    assert meta["network"]["num_classes"] == 4 and meta["slices"] == [0]
    np.testing.assert_array_equal(labels.data, data)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_errors_are_notifications_and_change_nothing(qtbot, make_napari_viewer, tiny_model,
                                                     phantom, notifications):
    viewer = make_napari_viewer()
    image = viewer.add_image(phantom.image, name="ct")
    viewer.add_points(np.zeros((1, 3)), name="points")
    widget = _widget(viewer)
    assert [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())] == ["ct"]
    assert widget.labels_combo.count() == 0
    models = ModelStore().names()

    def refused(text):
        future = widget.finetune()
        assert future.done() and isinstance(future.exception(), FinetuneError)
        assert notifications and notifications[-1][0] == "error", notifications
        assert text in notifications[-1][1]
        assert not widget.busy and ModelStore().names() == models
        notifications.clear()

    refused("Choose a labels layer")
    assert widget.mark_reviewed() == []
    assert "Choose a labels layer" in notifications.pop()[1]

    labels = viewer.add_labels(np.zeros(phantom.labels.shape, np.int32), name="ct labels")
    widget.labels_layer = labels
    refused("Nothing to learn from yet")

    labels.data[1] = 1000
    widget.mark_reviewed([1])
    refused("label values outside 0..255")

    labels.data[1] = phantom.labels[1]
    snapshot = labels.data.copy()
    widget.name_edit.setText("tiny")
    refused("a model named 'tiny' already exists")
    widget.name_edit.setText("bundled")
    refused("reserved name")
    widget.name_edit.setText("ok-name")

    image.data = phantom.image[:5]
    refused("differ in shape")
    image.data = phantom.image
    widget.model_combo.setCurrentIndex(-1)
    refused("Choose a base model")
    widget.model_combo.clear()
    refused("No stored model is available")
    widget.refresh_models()
    assert widget.model_combo.currentText() == "tiny"

    viewer.layers.remove(image)
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="photo", rgb=True)
    viewer.add_labels(np.ones((64, 64), np.uint8), name="photo labels")
    assert widget.image_layer is rgb
    refused("colour (RGB/RGBA) image")

    viewer.add_image(np.zeros((0, 64, 64), np.uint8), name="empty")
    widget.image_layer, widget.labels_layer = "empty", "ct labels"
    refused("holds no image data")

    assert widget.resegment_unreviewed().exception() is not None
    assert "Segment widget" in notifications.pop()[1]
    np.testing.assert_array_equal(labels.data, snapshot)
    assert ReviewState.from_metadata(labels.metadata).reviewed == {1}


def test_early_stop_is_reported_and_save_failure_is_an_error(
        qtbot, make_napari_viewer, tiny_model, phantom, notifications, monkeypatch):
    from napari_fcnseg.core.finetune import FinetuneResult
    from napari_fcnseg.core.progress import Progress

    def stopping(net, image, labels, *, slices, class_names, base_class_names, settings,
                 modality, ignore_label):
        yield Progress(1, settings.steps, "step 1", 0.5, 0.1)
        return FinetuneResult(net, list(class_names), list(slices), {"organ": 0.1},
                              {"organ": 0.2}, {"organ": 0.3}, 1,
                              "the training loss became NaN at step 2", folds=2)

    monkeypatch.setattr("napari_fcnseg.core.finetune.finetune_iter", stopping)
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    viewer.add_labels(phantom.labels.copy(), name="ct labels")
    widget = _widget(viewer)
    name = _wait(qtbot, widget.finetune()).result()
    assert not widget.busy and widget.resegment_button.isEnabled()
    assert ModelStore().load(name).metadata["stopped"].startswith("the training loss became NaN")
    assert ("info", "Fine-tuning stopped early: the training loss became NaN at step 2.") \
        in notifications

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ModelStore, "save", disk_full)
    future = _wait(qtbot, widget.finetune())
    assert isinstance(future.exception(), FinetuneError)
    assert notifications[-1] == ("error", "Fine-tuning failed: the model could not be saved: "
                                          "disk full")
    assert ModelStore().names() == [*BUILT_IN, "tiny", name]


@pytest.mark.parametrize("improved", [True, False])
def test_held_out_check_decides_which_model_segments_next(qtbot, make_napari_viewer, tiny_model,
                                                          phantom, monkeypatch, improved):
    from napari_fcnseg.core import finetune as core_ft

    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    widget = _widget(viewer, steps=2, heldout=True)
    assert _wait(qtbot, seg.segment("volume")).done()
    _set_slice(seg.labels_layer, 1, phantom.labels[1])
    widget.mark_reviewed([1, 3])
    # a random tiny model may or may not improve: fix the verdict, keep the measurement real
    monkeypatch.setattr(core_ft.FinetuneResult, "improved", property(lambda self: improved))
    name = _wait(qtbot, widget.finetune()).result()
    meta = ModelStore().load(name).metadata
    assert set(meta["dice_after"]) == {"organ", "lesion"}  # measured on held-out slices
    assert "held-out" in meta["dice_after_measured_on"] and "2-fold" in meta[
        "dice_after_measured_on"]
    assert widget.loss_plot.steps == [1, 2]  # the folds' steps are not the model's curve
    assert widget.progress_bar.value() == 6  # 2 steps + 2 folds x 2 steps
    text = widget.status_label.text()
    if improved:
        assert seg.model_name == name and "better than 'tiny'" in text
    else:
        assert seg.model_name == "tiny" and "not better" in text and "is selected" in text


def _round_with_check(qtbot, make_napari_viewer, phantom, steps=150):
    """A viewer whose fine-tuning round is saved, and selected, before its held-out check ends."""
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    widget = _widget(viewer, steps=steps, heldout=True)
    assert _wait(qtbot, seg.segment("volume")).done()
    _set_slice(seg.labels_layer, 1, phantom.labels[1])
    widget.mark_reviewed([1, 3, 5])
    name = widget.name_edit.text()
    future = widget.finetune()
    qtbot.waitUntil(lambda: name in ModelStore().names(), timeout=TIMEOUT)
    return widget, seg, future, name


def test_the_model_is_saved_and_usable_while_its_held_out_check_runs(
        qtbot, make_napari_viewer, tiny_model, phantom):
    widget, seg, future, name = _round_with_check(qtbot, make_napari_viewer, phantom)
    assert not future.done() and widget.busy  # the check is still running
    card = ModelStore().load(name).metadata
    assert card["dice_after"] == {} and card["improved"] is None
    assert "has not finished" in card["dice_after_measured_on"]
    assert seg.model_name == name and widget.resegment_button.isEnabled()
    assert not widget.finetune_button.isEnabled()
    assert "measuring it on held-out slices" in widget.status_label.text()
    assert _wait(qtbot, future).result() == name
    card = ModelStore().load(name).metadata
    assert set(card["dice_after"]) == {"organ", "lesion"} and card["improved"] is not None
    assert card["dice_after_measured_on"].startswith("held-out:")
    assert ModelStore().names().count(name) == 1


def test_cancelling_the_held_out_check_keeps_the_saved_model(qtbot, make_napari_viewer,
                                                             tiny_model, phantom, notifications):
    widget, seg, future, name = _round_with_check(qtbot, make_napari_viewer, phantom,
                                                  steps=300)
    widget.cancel_button.click()
    assert _wait(qtbot, future).result() == name
    card = ModelStore().load(name).metadata
    assert "was cancelled" in card["dice_after_measured_on"] and card["dice_after"] == {}
    assert notifications[-1] == ("info", f"Held-out check cancelled; '{name}' is saved and "
                                         "selected, without a held-out estimate.")
    assert seg.model_name == name and not widget.busy


def test_class_names_typed_by_the_user_reach_the_model_and_the_layer(
        qtbot, make_napari_viewer, tiny_model, phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    widget = _widget(viewer, steps=2)
    assert _wait(qtbot, seg.segment("volume")).done()
    labels = seg.labels_layer
    labels.data_setitem((np.array([1]), np.array([3]), np.array([3])), 3)  # a new class
    widget.mark_reviewed([1])
    widget.classes_edit.setText("background, liver")
    future = _wait(qtbot, widget.finetune())
    assert isinstance(future.exception(), FinetuneError)
    assert "label value 3" in str(future.exception())
    widget.classes_edit.setText("background, liver, tumour, vessel")
    name = _wait(qtbot, widget.finetune()).result()
    assert ModelStore().load(name).metadata["classes"] == ["background", "liver", "tumour",
                                                           "vessel"]
    assert list(labels.features["class"]) == ["background", "liver", "tumour", "vessel"]
    assert ReviewState.from_metadata(labels.metadata[METADATA_KEY]).classes[-1] == "vessel"
    widget.classes_edit.setText("background, liver, liver")
    assert "once" in str(_wait(qtbot, widget.finetune()).exception())


def test_time_estimate_before_the_round_and_after(qtbot, make_napari_viewer, tiny_model,
                                                  phantom):
    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    viewer.add_labels(phantom.labels.copy(), name="ct labels")
    widget = _widget(viewer, steps=4, heldout=True)
    widget.mark_reviewed([1, 2, 3])
    qtbot.waitUntil(lambda: "Takes about" in widget.form.estimate_label.text(), timeout=5000)
    assert "rough figure" in widget.form.estimate_label.text()
    n = len(widget.training_slices())  # labels no model wrote count as the person's
    assert f"{n} slice(s)" in widget.form.estimate_label.text()
    _wait(qtbot, widget.finetune())
    assert widget.form.seconds_per_step is not None
    widget.refresh()
    assert "last round" in widget.form.estimate_label.text()


def test_the_future_resolves_when_the_dock_is_closed_mid_round(qtbot, make_napari_viewer,
                                                                tiny_model, phantom):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer()
    viewer.add_image(phantom.image, name="ct")
    viewer.add_labels(phantom.labels.copy(), name="ct labels")
    widget = FinetuneWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.steps_spin.setValue(40)
    widget.heldout_check.setChecked(False)
    future = widget.finetune()
    qtbot.waitUntil(lambda: bool(widget.loss_plot.steps), timeout=TIMEOUT)  # under way
    viewer.window.remove_dock_widget(dock)
    widget.deleteLater()
    QApplication.processEvents()
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    assert future.result() in ModelStore().names()  # the finished round was still saved
