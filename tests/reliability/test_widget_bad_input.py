"""Run the widget rows of the bad-input matrix (widget_cases.py) in a napari viewer.

Every case docks its widget through ``viewer.window.add_plugin_dock_widget``, as napari's
Plugins menu does (so the widget gets napari's viewer proxy), acts, waits for the run to end,
and checks what its row says plus what every row promises (see :mod:`.widget_cases`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import re
import threading
from collections.abc import Callable

import numpy as np
import pytest

from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import Prediction
from napari_fcnseg.core.progress import Progress
from napari_fcnseg.core.store import ModelStore
from tests.widgets.conftest import save_tiny_model

from .widget_cases import WIDGET_CASES, WidgetCase

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
    # napari's own, when it is given a 0-size or a complex image
    pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Casting complex values:numpy.exceptions.ComplexWarning"),
]
TIMEOUT = 60_000
PLUGIN = "napari-fcnseg"
PHANTOM = generate_volume("CT", (4, 32, 32), seed=1)
#: Labels with one annotated slice (slice 1, the phantom's truth there).
ONE_SLICE = np.where(np.arange(4)[:, None, None] == 1, PHANTOM.labels, 0).astype(np.uint8)
#: What a plain message must not contain: a traceback, an exception's type, a temporary file.
NOT_PLAIN = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|\.tmp\b|\n")


def _digest(data) -> str:
    array = np.asarray(data)
    return hashlib.sha256(str((array.dtype, array.shape)).encode() + array.tobytes()).hexdigest()


class Run:
    """One case's viewer, the person's layers (with digests of their data) and its widget."""

    def __init__(self, viewer, qtbot, monkeypatch):
        self.viewer, self.qtbot, self.monkeypatch = viewer, qtbot, monkeypatch
        self.own: list = []  # (layer, digest) of every layer the person made
        self.widget = None
        self.gate = threading.Event()

    def image(self, data, **kwargs):
        """Add the person's image layer ``scan``."""
        return self._own(self.viewer.add_image(data, name="scan", **kwargs))

    def labels(self, data):
        """Add the person's labels layer ``scan labels``."""
        return self._own(self.viewer.add_labels(data, name="scan labels"))

    def _own(self, layer):
        self.own.append((layer, _digest(layer.data)))
        return layer

    def dock(self, name: str, steps: int = 2, heldout: bool = False):
        """Dock the widget ``name`` as napari's Plugins menu does; small fine-tuning rounds."""
        _, self.widget = self.viewer.window.add_plugin_dock_widget(PLUGIN, name)
        if hasattr(self.widget, "steps_spin"):
            self.widget.steps_spin.setValue(steps)
            self.widget.heldout_check.setChecked(heldout)
        return self.widget

    def slow_prediction(self) -> None:
        """Make prediction stop after its first batch until :attr:`gate` opens."""
        def predict_iter(net, data, **kwargs):
            yield Progress(1, 3, "first batch done")
            self.gate.wait(30)
            yield Progress(2, 3, "second batch done")
            return Prediction(np.ones(data.shape, np.uint8), None, list(range(data.shape[0])))

        self.monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", predict_iter)

    def segment_then(self, act: Callable[[], object]):
        """Start segmenting, ``act`` once the first batch is done, then let prediction go on."""
        self.slow_prediction()
        future = self.dock("Segment").segment()
        self.qtbot.waitUntil(lambda: "first batch" in self.widget.status_label.text(),
                             timeout=TIMEOUT)
        act()
        self.gate.set()
        return future

    def finetune_then(self, act: Callable[[], object], steps: int = 10_000):
        """Start fine-tuning, and ``act`` once the first step is done."""
        future = self.dock("Review and Fine-tune", steps=steps).finetune()
        self.qtbot.waitUntil(lambda: len(self.widget.loss_plot) >= 1, timeout=TIMEOUT)
        act()
        return future


RUNNERS: dict[str, Callable[[Run], concurrent.futures.Future]] = {}


def runs(*ids: str):
    """Register the function as the runner of the cases ``ids``."""
    def register(function):
        for case_id in ids:
            RUNNERS[case_id] = function
        return function
    return register


def _segment(image, *, labels=None, **kwargs):
    def run(r: Run):
        r.image(image, **kwargs)
        if labels is not None:
            r.labels(labels)
        return r.dock("Segment").segment()
    return run


def _finetune(image, labels, *, heldout=False, **kwargs):
    def run(r: Run):
        r.image(image, **kwargs)
        r.labels(labels)
        return r.dock("Review and Fine-tune", heldout=heldout).finetune()
    return run


_rng = np.random.default_rng(0)
_noisy = _rng.normal(size=(4, 32, 32)).astype(np.float32)
_non_finite = _noisy.copy()
_non_finite[0, :2, :2], _non_finite[1, 5, 5], _non_finite[2, 7, 7] = np.nan, np.inf, -np.inf
RUNNERS.update({
    "seg-rgb": _segment(np.zeros((16, 16, 3), np.uint8), rgb=True),
    "seg-nan-inf": _segment(_non_finite),
    "seg-all-nan": _segment(np.full((4, 32, 32), np.nan, np.float32)),
    "seg-empty": _segment(np.zeros((0, 32, 32), np.float32), contrast_limits=(0, 1)),
    "seg-constant": _segment(np.full((4, 32, 32), 7, np.int16)),
    "seg-constant-1e20": _segment(np.full((4, 32, 32), 1e20, np.float32)),
    "seg-uint64-top": _segment(np.full((4, 32, 32), 2**64 - 5, np.uint64)),
    "seg-4d": _segment(_rng.normal(size=(2, 3, 32, 32)).astype(np.float32)),
    "seg-5d": _segment(_rng.normal(size=(2, 2, 2, 16, 16)).astype(np.float32)),
    "seg-bool": _segment(_noisy > 0),
    "seg-labels-other-shape": _segment(PHANTOM.image, labels=np.ones((4, 16, 16), np.uint8)),
    "seg-labels-value-5": _segment(PHANTOM.image, labels=np.full((4, 32, 32), 5, np.uint8)),
    "ft-rgb-image": _finetune(np.zeros((16, 16, 3), np.uint8),
                              np.ones((16, 16, 3), np.uint8), rgb=True),
    "ft-nan-inf": _finetune(_non_finite, ONE_SLICE),
    "ft-labels-other-shape": _finetune(PHANTOM.image, np.ones((4, 16, 16), np.uint8)),
    "ft-label-300": _finetune(PHANTOM.image, ONE_SLICE.astype(np.uint16) * 300),
    "ft-no-annotation": _finetune(PHANTOM.image, np.zeros((4, 32, 32), np.uint8)),
    "ft-one-slice": _finetune(PHANTOM.image, ONE_SLICE, heldout=True),
    "ft-bool-labels": _finetune(PHANTOM.image, ONE_SLICE > 0),
})


@runs("seg-complex")
def _complex_image(r: Run):
    # napari cannot show complex values (before 0.6: a TypeError from its colormap)
    with pytest.raises((NotImplementedError, TypeError)):
        r.viewer.add_image(np.zeros((4, 16, 16), np.complex64), name="scan")
    return r.dock("Segment").segment()


@runs("ft-float-labels")
def _float_labels(r: Run):
    r.image(PHANTOM.image)
    with pytest.raises(TypeError, match="integer"):  # napari's Labels take integers only
        r.viewer.add_labels(ONE_SLICE.astype(np.float32), name="scan labels")
    return r.dock("Review and Fine-tune").finetune()


@runs("seg-cancel")
def _segment_cancel(r: Run):
    r.image(PHANTOM.image)
    r.labels(ONE_SLICE.copy())  # a run must not write into it once cancelled
    return r.segment_then(lambda: r.widget.cancel_button.click())


@runs("seg-close-viewer")
def _segment_close(r: Run):
    r.image(PHANTOM.image)
    r.labels(ONE_SLICE.copy())
    return r.segment_then(r.viewer.close)


@runs("seg-delete-image")
def _segment_delete_image(r: Run):
    r.image(PHANTOM.image)
    return r.segment_then(lambda: r.viewer.layers.remove("scan"))


@runs("seg-runtime-error")
def _segment_runtime_error(r: Run):
    def predict_iter(net, data, **kwargs):
        yield Progress(1, 2, "first batch done")
        raise RuntimeError("not enough memory: you tried to allocate 9 GB")

    r.monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", predict_iter)
    r.image(PHANTOM.image)
    return r.dock("Segment").segment()


@runs("ft-cancel")
def _finetune_cancel(r: Run):
    r.image(PHANTOM.image)
    r.labels(ONE_SLICE.copy())
    return r.finetune_then(lambda: r.widget.cancel_button.click())


@runs("ft-close-viewer")
def _finetune_close(r: Run):
    import napari

    if tuple(int(p) for p in napari.__version__.split(".")[:3] if p.isdigit()) < (0, 6, 6):
        pytest.skip("napari before 0.6.6 stops no running task when its window closes")
    r.image(PHANTOM.image)
    r.labels(ONE_SLICE.copy())
    return r.finetune_then(r.viewer.close)


@runs("ft-delete-image")
def _finetune_delete_image(r: Run):
    r.image(PHANTOM.image)
    r.labels(ONE_SLICE.copy())
    return r.finetune_then(lambda: r.viewer.layers.remove("scan"), steps=10)


@pytest.fixture
def notes():
    """Every notification napari's notification manager dispatches during the test."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def tiny_store(tmp_path, monkeypatch):
    """A private model store whose default is a tiny random 3-class model, "tiny"."""
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NAPARI_FCNSEG_THREADS", "1")
    ModelStore().set_default(save_tiny_model("tiny"))
    return ModelStore()


def _alive(widget) -> bool:
    try:
        widget.objectName()
    except (RuntimeError, AttributeError):
        return False
    return widget is not None


def _outcome(future: concurrent.futures.Future, at_once: bool) -> str:
    """The row's name for how ``future`` ended (see :class:`.widget_cases.WidgetCase`)."""
    if future.cancelled() or isinstance(future.exception(), concurrent.futures.CancelledError):
        return "cancelled"  # Fine-tune's FinetuneCancelled is a CancelledError
    if future.exception() is None:
        return "done"
    return "refused" if at_once else "failed"


@pytest.mark.parametrize("case", WIDGET_CASES, ids=[c.id for c in WIDGET_CASES])
def test_widget_bad_input(case: WidgetCase, qtbot, make_napari_viewer, monkeypatch, notes,
                          tiny_store):
    viewer = make_napari_viewer()
    run = Run(viewer, qtbot, monkeypatch)
    models = set(tiny_store.names())
    with qtbot.capture_exceptions() as exceptions:
        try:
            future = RUNNERS[case.id](run)
            refused_at_once = future.done()
            qtbot.waitUntil(future.done, timeout=TIMEOUT)
            qtbot.waitUntil(lambda: not _alive(run.widget) or not run.widget.busy,
                            timeout=TIMEOUT)
        finally:
            run.gate.set()
        qtbot.wait(50)  # let queued signals (a late notification) arrive
    assert not exceptions, f"exceptions escaped into Qt: {exceptions}"
    assert _outcome(future, refused_at_once) == case.outcome, future.exception()
    # exactly the notifications of the row, every one a plain message
    assert [(str(n.severity), n.message) for n in notes] == list(case.notes)
    for n in notes:
        assert type(n).__name__ == "Notification" and not NOT_PLAIN.search(n.message), n
    status = run.widget.status_label.text() if _alive(run.widget) else ""
    assert status == case.status
    # the person's layers hold what they held; the widget added only what the row says
    for layer, digest in run.own:
        assert _digest(layer.data) == digest, f"'{layer.name}' was changed"
    own_names = {layer.name for layer, _ in run.own}
    assert sorted({layer.name for layer in viewer.layers} - own_names) == sorted(case.new_layers)
    assert set(ModelStore().names()) - models == ({case.saves} if case.saves else set())
    assert models <= set(ModelStore().names())
    if case.saves:
        assert future.result() == case.saves
        assert ModelStore().load(case.saves).metadata["parent"] == "tiny"


def test_every_case_has_a_runner():
    assert sorted(RUNNERS) == sorted(c.id for c in WIDGET_CASES)
    assert len(WIDGET_CASES) >= 15
