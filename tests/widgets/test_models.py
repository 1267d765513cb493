import pytest

from napari_fcnseg.core.store import BUILT_IN, BUNDLED, ModelStore
from napari_fcnseg.widgets import session
from napari_fcnseg.widgets.models import ModelsWidget, describe
from napari_fcnseg.widgets.segment import SegmentWidget


@pytest.fixture
def widget(qtbot, make_model):
    make_model("tiny")
    w = ModelsWidget()
    qtbot.addWidget(w)
    return w


def _row_texts(widget, name):
    row = widget.names().index(name)
    return [widget.table.item(row, c).text() for c in range(widget.table.columnCount())]


def test_lists_bundled_and_user_models_with_metadata(widget, make_model):
    assert widget.names() == [*BUILT_IN, "tiny"]
    texts = _row_texts(widget, "tiny")
    assert texts[0] == "tiny" and texts[1] == "bundled"
    assert "Created: 20" in describe(
        ModelStore().load("tiny").metadata)  # the creation date is in the details
    store = ModelStore()
    store.save(store.load("tiny").net, "tuned", {
        "classes": ["background", "organ", "lesion"], "parent": "tiny",
        "num_annotated_slices": 4, "steps": 30,
        "dice_before": {"organ": 0.5, "lesion": 0.25}, "dice_after": {"organ": 0.9, "lesion": 0.7},
        "dice_after_measured_on": "held-out: 4 slices (3-fold)", "improved": True})
    store.save(store.load("tiny").net, "worse", {
        "classes": ["background", "organ", "lesion"], "parent": "tiny",
        "num_annotated_slices": 2, "dice_before": {"organ": 0.9}, "dice_after": {"organ": 0.5},
        "improved": False})
    session.models_changed.emit()
    texts = _row_texts(widget, "tuned")
    assert texts[1] == "tiny"
    assert texts[2:] == ["4", "0.38 → 0.80"]
    assert _row_texts(widget, "worse")[3] == "0.90 → 0.50 (not better)"
    widget.select("tuned")
    assert ("Fine-tuned, on annotated slices it did not train on: 0.80 (organ 0.90, lesion "
            "0.70)") in widget.details.text()
    assert "3-fold" in widget.details.text()
    assert "Trained on 4 slice(s), 30 steps" in describe(store.load("tuned").metadata)


def test_rename_delete_and_refuse_bundled(widget, notifications):
    changed = []

    def on_changed():
        changed.append(True)

    session.models_changed.connect(on_changed)
    try:
        widget.select("tiny")
        widget.ask_name = lambda title, current: "liver v2"
        widget.buttons["Rename..."].click()
        assert widget.names() == [*BUILT_IN, "liver_v2"]
        assert widget.selected_name() == "liver_v2"
        assert changed and notifications[-1][0] == "info"

        widget.confirm = lambda question: False
        assert not widget.delete("liver_v2")
        assert "liver_v2" in ModelStore().names()
        widget.confirm = lambda question: True
        widget.buttons["Delete"].click()
        assert ModelStore().names() == list(BUILT_IN)

        assert not widget.rename(BUNDLED, "mine")
        assert notifications[-1][0] == "error" and "bundled" in notifications[-1][1]
        assert not widget.delete(BUNDLED)
        assert notifications[-1][0] == "error"
    finally:
        session.models_changed.disconnect(on_changed)


def test_export_import_and_errors(widget, tmp_path, notifications):
    dest = tmp_path / "shared" / "tiny-export.pt"
    dest.parent.mkdir()
    widget.select("tiny")
    widget.ask_save_path = lambda suggested: str(dest)
    widget.buttons["Export..."].click()
    assert dest.is_file() and notifications[-1][0] == "info"

    widget.ask_open_path = lambda: str(dest)
    widget.buttons["Import..."].click()
    assert len(widget.names()) == len(BUILT_IN) + 2
    imported = widget.selected_name()
    assert imported not in (BUNDLED, "tiny")
    assert ModelStore().load(imported).class_names == ["background", "organ", "lesion"]

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    assert not widget.import_model(junk)
    assert notifications[-1][0] == "error"
    assert len(widget.names()) == len(BUILT_IN) + 2


def test_default_and_reset_reach_the_segment_widget(qtbot, widget, make_napari_viewer):
    viewer = make_napari_viewer()
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    assert segment.model_name == BUNDLED
    widget.select("tiny")
    widget.buttons["Set as default"].click()
    assert ModelStore().default() == "tiny"
    assert _row_texts(widget, "tiny")[0] == "tiny (default)"
    widget.set_default(BUNDLED)
    widget.buttons["Reset to bundled"].click()
    assert ModelStore().default() == BUNDLED
    assert widget.rename("tiny", "renamed")
    items = [segment.model_combo.itemText(i) for i in range(segment.model_combo.count())]
    assert items == [*BUILT_IN, "renamed"]
