"""The npe2 reader and writer inside a napari viewer, with the widgets: save, reopen, resume.

Here, not in tests/test_reader.py or tests/test_writer.py, because it needs this folder's model
store fixtures (a tiny model made the default).
"""

import nibabel as nib
import numpy as np

from napari_fcnseg.core.phantoms import generate_volume


def test_saved_labels_resume_with_class_names_and_review_state(
    qtbot, make_napari_viewer, tiny_model, tmp_path
):
    from napari_fcnseg.core.review import METADATA_KEY, ReviewState
    from napari_fcnseg.io.sidecar import sidecar_path

    viewer = make_napari_viewer()
    source = tmp_path / "ct.nii.gz"
    vol = generate_volume("CT", (6, 48, 48), 4)
    nib.save(
        nib.Nifti1Image(
            np.transpose(vol.image, (2, 1, 0)).astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0])
        ),
        source,
    )
    (image,) = viewer.open(str(source), plugin="napari-fcnseg")
    _, seg = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    _, review = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Review and Fine-tune")
    future = seg.segment("volume")
    qtbot.waitUntil(future.done, timeout=60_000)
    labels = seg.labels_layer
    labels.data_setitem((np.array([2]), np.array([5]), np.array([5])), 2)
    review.mark_reviewed([2, 4])
    qtbot.waitUntil(lambda: review.training_slices() == [2, 4], timeout=5000)
    out = tmp_path / "ct_labels.nii.gz"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(out), selected=True, plugin="napari-fcnseg")
    assert out.is_file() and sidecar_path(out).is_file()
    saved = labels.data.copy()

    viewer2 = make_napari_viewer()
    (image2,) = viewer2.open(str(source), plugin="napari-fcnseg")
    (back,) = viewer2.open(str(out), plugin="napari-fcnseg")
    assert back._type_string == "labels"  # a label file opens as labels, not as a grey image
    np.testing.assert_array_equal(back.data, saved)
    np.testing.assert_allclose(back.scale, image2.scale)
    assert list(back.features["class"]) == ["background", "organ", "lesion"]
    state = ReviewState.from_metadata(back.metadata[METADATA_KEY])
    assert state.reviewed == {2, 4}
    _, review2 = viewer2.window.add_plugin_dock_widget("napari-fcnseg", "Review and Fine-tune")
    review2.labels_layer = back
    assert review2.slice_status() == {2: "edited + reviewed", 4: "reviewed"}
