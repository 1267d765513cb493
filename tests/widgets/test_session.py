"""The widgets as napari docks them: each gets its own viewer proxy, yet they share one session."""

import gc
import re

import numpy as np
import pytest

from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.review import ReviewState
from napari_fcnseg.core.store import ModelStore
from napari_fcnseg.widgets._slice_review import FinetuneError
from napari_fcnseg.widgets.session import _SESSIONS, models_changed, real_viewer, session_for

pytestmark = pytest.mark.gui
TIMEOUT = 60_000
PLUGIN = "napari-fcnseg"
IMAGE = "MR-like abdomen"


@pytest.fixture
def phantom_labels():
    """A small image and its labels."""
    ph = generate_volume("CT", (4, 48, 48), seed=2)
    return np.asarray(ph.image), np.asarray(ph.labels).copy()


def _dock(viewer, display_name):
    """Dock a widget exactly as napari's Plugins menu does; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display_name)
    return widget


def _result(qtbot, future):
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    return future.result()


def test_review_loop_with_widgets_from_the_plugins_menu(qtbot, make_napari_viewer, tiny_model,
                                                        notifications):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mr_abdomen")
    seg = _dock(viewer, "Segment")
    review = _dock(viewer, "Review and Fine-tune")
    _dock(viewer, "Models")
    review.steps_spin.setValue(2)
    review.heldout_check.setChecked(False)  # selection after a held-out check: test_finetune
    assert seg.image_layer.name == IMAGE and seg.model_name == "tiny"

    n = viewer.layers[IMAGE].data.shape[0]
    assert _result(qtbot, seg.segment("volume")) == list(range(n))
    labels = viewer.layers[f"{IMAGE} labels"]
    assert review.labels_layer is labels and review.image_layer is viewer.layers[IMAGE]
    assert review.model_combo.currentText() == "tiny"

    # paint a lesion into slice 3 with napari's brush, then vouch for it and for slice 10
    viewer.dims.set_current_step(0, 3)
    labels.selected_label, labels.brush_size = 2, 21
    painted = labels.data[3].copy()
    labels.paint((3, 128, 128), 2)
    assert not np.array_equal(labels.data[3], painted)
    qtbot.waitUntil(lambda: review.training_slices() == [3], timeout=5000)
    review.mark_button.click()  # "Mark reviewed": the slice shown now
    assert review.mark_reviewed([10]) == [10]
    assert review.slice_status() == {3: "edited + reviewed", 10: "reviewed"}
    kept = {k: labels.data[k].copy() for k in (3, 10)}

    proposed = review.name_edit.text()
    name = _result(qtbot, review.finetune())
    assert name == proposed and name in ModelStore().names()
    assert seg.model_name == name  # the Segment widget now segments with the new model
    assert review.resegment_button.isEnabled()

    todo = [k for k in range(n) if k not in kept]
    before = labels.data.copy()
    assert _result(qtbot, review.resegment_unreviewed()) == todo
    for k, data in kept.items():  # the reviewed slices are byte-for-byte what they were
        assert labels.data[k].tobytes() == data.tobytes()
    image = np.asarray(viewer.layers[IMAGE].data)
    expected = predict(ModelStore().load(name).net, image, slices=todo,
                       normalizer=fit_normalizer(image, "MR")).labels
    np.testing.assert_array_equal(labels.data[todo], expected[todo])
    assert all(not np.array_equal(labels.data[k], before[k]) for k in todo)  # all rewritten
    state = ReviewState.from_metadata(labels.metadata)
    assert state.model == name and state.reviewed == {3, 10}
    assert not [m for level, m in notifications if level == "error"]


def test_proxies_of_one_viewer_share_a_session_and_viewers_do_not():
    from napari.components import ViewerModel
    from napari.utils._proxies import PublicOnlyProxy

    first, second = ViewerModel(), ViewerModel()
    proxy_a, proxy_b = PublicOnlyProxy(first), PublicOnlyProxy(first)
    assert proxy_a is not proxy_b and proxy_a.layers is not proxy_b.layers
    assert real_viewer(proxy_a) is first and real_viewer(first) is first
    session = session_for(proxy_a)
    assert session_for(proxy_b) is session and session_for(first) is session
    assert session.viewer is first
    assert session_for(PublicOnlyProxy(proxy_b)) is session  # a proxy of a proxy
    other = session_for(PublicOnlyProxy(second))
    assert other is not session and other.viewer is second
    assert session_for(second) is other


def test_a_session_goes_with_its_viewer():
    from napari.components import ViewerModel
    from napari.utils._proxies import PublicOnlyProxy

    viewer = ViewerModel()
    session = session_for(PublicOnlyProxy(viewer))
    assert _SESSIONS.get(viewer) is session
    count = len(_SESSIONS)
    del viewer
    gc.collect()
    assert len(_SESSIONS) == count - 1 and session.viewer is None


def test_docked_widgets_find_each_other(qtbot, make_napari_viewer, tiny_model, make_model,
                                        notifications):
    viewer = make_napari_viewer()
    review = _dock(viewer, "Review and Fine-tune")
    seg = _dock(viewer, "Segment")
    models = _dock(viewer, "Models")
    assert seg.session is review.session is session_for(viewer)
    assert seg.viewer is viewer and review.viewer is viewer
    assert models.viewer is not viewer  # each widget was handed its own proxy
    assert seg.session.segmenter() is seg
    assert seg.session.model == "tiny"

    make_model("other")
    models_changed.emit()  # the new model is listed everywhere ...
    assert seg.model_combo.findText("other") >= 0 and review.model_combo.findText("other") >= 0
    assert seg.model_name == "tiny"  # ... but chosen nowhere
    seg.model_combo.setCurrentText("other")  # choosing in Segment: the session follows
    assert seg.session.model == "other"
    seg.session.select_model("tiny")  # selecting in the session: Segment follows
    assert seg.model_name == "tiny"
    assert not notifications


def test_sessions_of_two_viewers_stay_apart(qtbot, make_napari_viewer, tiny_model, make_model):
    viewers = make_napari_viewer(), make_napari_viewer()
    segs = [_dock(viewer, "Segment") for viewer in viewers]
    assert segs[0].session is not segs[1].session
    make_model("other")
    models_changed.emit()  # one model store for all viewers
    assert all(seg.model_combo.findText("other") >= 0 for seg in segs)
    session_for(viewers[0]).select_model("other")
    assert [seg.model_name for seg in segs] == ["other", "tiny"]
    assert session_for(viewers[1]).segmenter() is segs[1]


def test_segment_opened_later_takes_the_sessions_model(qtbot, make_napari_viewer, tiny_model,
                                                       make_model):
    viewer = make_napari_viewer()
    make_model("tuned")
    session_for(viewer).select_model("tuned")  # e.g. fine-tuned before Segment was opened
    seg = _dock(viewer, "Segment")
    assert seg.model_name == "tuned"


def test_resegment_without_segment_widget_says_so(qtbot, make_napari_viewer, tiny_model,
                                                  notifications, phantom_labels):
    viewer = make_napari_viewer()
    image, labels = phantom_labels
    viewer.add_image(image, name="scan")
    viewer.add_labels(labels, name="scan labels")
    review = _dock(viewer, "Review and Fine-tune")
    seg = _dock(viewer, "Segment")
    assert review.session.segmenter() is seg
    viewer.window.remove_dock_widget(seg)  # closed with its "x", as napari does
    assert review.session.segmenter() is None  # although `seg` still holds the widget
    future = review.resegment_unreviewed()
    assert isinstance(future.exception(), FinetuneError)
    assert "Open the Segment widget" in str(future.exception())
    assert notifications[-1][0] == "error"


def test_the_session_hears_each_choice_once(qtbot, make_napari_viewer, tiny_model, make_model):
    viewer = make_napari_viewer()
    seg = _dock(viewer, "Segment")
    heard = []
    seg.session.model_selected.connect(heard.append)
    make_model("fresh")  # saved, but no one told the widgets yet
    seg.session.select_model("fresh")
    assert seg.model_name == "fresh" and heard == ["fresh"]
    seg.model_combo.setCurrentText("tiny")
    ModelStore().delete("tiny")
    models_changed.emit()  # the chosen model is gone: Segment falls back to another
    assert heard == ["fresh", "tiny", seg.model_name] and seg.model_name != "tiny"


def test_docked_review_keeps_the_users_choices(qtbot, make_napari_viewer, tiny_model, make_model,
                                               phantom_labels):
    viewer = make_napari_viewer()
    image, data = phantom_labels
    viewer.add_image(image, name="scan")
    labels = viewer.add_labels(data, name="scan labels")
    make_model("other")
    review = _dock(viewer, "Review and Fine-tune")
    assert review.labels_layer is labels
    review.model_combo.setCurrentText("other")
    viewer.add_points(np.zeros((1, 3)))  # the same labels stay under review ...
    labels.paint((0, 10, 10), 1)
    qtbot.waitUntil(lambda: 0 in review.training_slices(), timeout=5000)
    assert review.model_combo.currentText() == "other"  # ... so the base model stays too


def test_labels_layer_names_and_colours_its_classes(qtbot, make_napari_viewer, tiny_model):
    from napari_fcnseg.class_style import PALETTE

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mr_abdomen")
    seg = _dock(viewer, "Segment")
    assert "organ" in seg.legend_label.text() and PALETTE[1] in seg.legend_label.text()
    _result(qtbot, seg.segment("volume"))
    labels = viewer.layers[f"{IMAGE} labels"]
    assert list(labels.features["class"]) == ["background", "organ", "lesion"]
    truth = viewer.layers[f"{IMAGE} ground truth"]
    for value in (1, 2):  # the prediction is told apart from the ground truth by colour
        ours = labels.colormap.map(np.array([value]))[0]
        np.testing.assert_allclose(ours[:3], np.array(
            [int(PALETTE[value - 1][i:i + 2], 16) / 255 for i in (1, 3, 5)]), atol=0.01)
        assert not np.allclose(ours, truth.colormap.map(np.array([value]))[0], atol=0.05)
    status = labels.get_status((0, 0, 0))  # napari < 0.6 puts the value into "coordinates"
    value, name = re.search(r"(\d+); class: (\w+)", str(status.get("value", status["coordinates"]))
                            ).groups()
    assert ["background", "organ", "lesion"][int(value)] == name  # the status bar names it


def test_guided_review_goes_to_the_most_uncertain_free_slice(qtbot, make_napari_viewer,
                                                             tiny_model):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mr_abdomen")
    seg = _dock(viewer, "Segment")
    review = _dock(viewer, "Review and Fine-tune")
    _result(qtbot, seg.segment("volume"))
    labels = viewer.layers[f"{IMAGE} labels"]
    state = ReviewState.from_metadata(labels.metadata)
    n = labels.data.shape[0]
    assert set(state.uncertainty) == set(range(n))
    ranked = sorted(range(n), key=lambda k: -state.uncertainty[k])
    assert review.go_to_next_to_review() == ranked[0]
    assert review.current_slice() == ranked[0]
    keys = {str(k): f for k, f in viewer.keymap.items()}
    assert {"Shift+R", "Shift+N", "Shift+B"} <= set(keys), keys.keys()
    keys["Shift+R"](viewer)  # mark reviewed by keyboard
    assert ranked[0] in ReviewState.from_metadata(labels.metadata).reviewed
    keys["Shift+N"](viewer)
    assert review.current_slice() == ranked[1]
    keys["Shift+B"](viewer)
    assert review.current_slice() == ranked[0]
    assert "Shift-N" in review.shortcuts_label.text()
    assert "next slice" in review.shortcuts_label.toolTip()


def test_review_prefers_the_plugins_labels_over_a_ground_truth(qtbot, make_napari_viewer,
                                                                tiny_model):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mr_abdomen")  # image + "... ground truth" labels
    review = _dock(viewer, "Review and Fine-tune")
    seg = _dock(viewer, "Segment")
    _result(qtbot, seg.segment("volume"))
    ours = viewer.layers[f"{IMAGE} labels"]
    qtbot.waitUntil(lambda: review.labels_layer is ours, timeout=5000)
    ours.name = "my segmentation"  # renamed: still the plugin's, still preferred
    review.image_layer = IMAGE
    qtbot.waitUntil(lambda: review.labels_layer is ours, timeout=5000)
    review.labels_layer = viewer.layers[f"{IMAGE} ground truth"]  # the person may pick it
    assert review.labels_layer is viewer.layers[f"{IMAGE} ground truth"]


def test_optional_uncertainty_layer(qtbot, make_napari_viewer, tiny_model):
    from napari_fcnseg.core.predict import entropy_map

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mr_abdomen")
    seg = _dock(viewer, "Segment")
    seg.uncertainty_check.setChecked(True)
    _result(qtbot, seg.segment("volume"))
    layer = viewer.layers[f"{IMAGE} uncertainty"]
    assert layer.data.dtype == np.uint8 and layer.data.shape == viewer.layers[IMAGE].data.shape
    assert layer.data.max() > 0
    assert not [lay.name for lay in viewer.layers if lay.name.endswith("probability")]
    probs = np.zeros((3, 2, 2), np.uint8)
    probs[0] = 255  # certain
    assert entropy_map(probs).max() == 0
    assert entropy_map(np.full((3, 2, 2), 85, np.uint8)).min() == 255  # torn between three
