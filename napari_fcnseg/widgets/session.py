"""What the plugin's widgets share: one :class:`ViewerSession` per viewer, and store events.

napari does not hand a plugin widget the ``Viewer`` itself but a fresh proxy of it for each
widget (``napari.utils._proxies.PublicOnlyProxy``, a ``wrapt.ObjectProxy``), so neither the
viewer object a widget received nor its ``id()`` tells which widgets sit in the same viewer.
:func:`session_for` looks through such proxies to the real ``Viewer`` (every layer of proxy
exposes the object it wraps as ``__wrapped__``) and keeps one session per real viewer in a
:class:`weakref.WeakKeyDictionary`: every widget of a viewer gets the same session, whether
napari docked it (Plugins menu, ``add_plugin_dock_widget``) or it was built on the viewer
directly, and the session goes away with its viewer.

Widgets talk to each other only through the session: the Segment widget registers itself as
the viewer's segmenter and follows :attr:`ViewerSession.model_selected`; the Review and
Fine-tune widget asks the session for the segmenter and selects the models it trains there.
They read and write models through the session's one :attr:`ViewerSession.store`, and follow
changes of it with :func:`follow_models`.

The Segment and Review widgets also work on :func:`real_viewer` rather than the proxy: the
proxy wraps every layer it hands out in a new proxy, so the same layer looked up twice is not
``is``-identical, and the widgets tell layers apart by identity. They use napari's public API
only, which is all the proxy would let through.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psygnal import Signal

from ._common import is_alive

if TYPE_CHECKING:
    import napari

    from napari_fcnseg.core.store import ModelStore

    from .segment import SegmentWidget

__all__ = ["ViewerSession", "follow_models", "models_changed", "real_viewer", "session_for"]


class _PluginEvents:
    """Holder for the plugin-wide signals (psygnal needs a class to declare them)."""

    models_changed = Signal()


_EVENTS = _PluginEvents()

#: Emitted (on the main thread) after the model store changed: a model was saved, deleted,
#: renamed or imported, or the store was reset. Widgets listing models refresh on it. It is
#: plugin-wide, not per viewer, because all viewers share the one model store.
models_changed = _EVENTS.models_changed


def follow_models(slot: Callable[[], Any]) -> None:
    """Call ``slot``, a Qt object's bound method, after every :data:`models_changed`.

    The object is held weakly, and the connection ends once its Qt object is deleted (a closed
    dock), so no widget has to check that itself.

    Parameters
    ----------
    slot : bound method
        A method of a Qt widget (or other ``QObject``), taking no arguments.
    """
    # a bound method (mypy types it as a plain callable, without __self__ and __func__)
    owner, function = weakref.ref(slot.__self__), slot.__func__  # type: ignore[attr-defined]

    def on_models_changed() -> None:
        target = owner()
        if target is None or not is_alive(target):
            models_changed.disconnect(on_models_changed)
            return
        function(target)

    models_changed.connect(on_models_changed)


class ViewerSession:
    """The state the plugin's widgets in one viewer share.

    Get it with :func:`session_for`, never by constructing it: that is what makes every widget
    of a viewer see the same one.

    Parameters
    ----------
    viewer : napari.Viewer
        The real viewer (not a proxy); the session refers to it weakly.
    """

    #: Emitted with a model's name when the viewer should segment with that model from now on
    #: (the Segment widget's choice, or a model just fine-tuned).
    model_selected = Signal(str)

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self._segmenter: weakref.ReferenceType[SegmentWidget] | None = None
        self._model = ""
        self._store: ModelStore | None = None

    @property
    def viewer(self) -> napari.Viewer | None:
        """The real viewer of this session, or None once it is gone."""
        return self._viewer()

    @property
    def store(self) -> ModelStore:
        """The model store this viewer's widgets list, load and save models with.

        Made on first use (importing torch then, not when a widget module is imported); its
        folder is the one :class:`~napari_fcnseg.core.store.ModelStore` picks by default.
        """
        if self._store is None:
            from napari_fcnseg.core.store import ModelStore

            self._store = ModelStore()
        return self._store

    @property
    def model(self) -> str:
        """Name of the model this viewer segments with ("" before one was chosen)."""
        return self._model

    def select_model(self, name: str) -> None:
        """Make ``name`` the model to segment with, telling :attr:`model_selected` if it changed.

        Parameters
        ----------
        name : str
            A stored model's name.
        """
        if name and name != self._model:
            self._model = name
            self.model_selected.emit(name)

    def set_segmenter(self, widget: SegmentWidget) -> None:
        """Register ``widget`` (weakly) as the widget that segments in this viewer.

        Parameters
        ----------
        widget : SegmentWidget
            The viewer's Segment widget; a later registration replaces it.
        """
        self._segmenter = weakref.ref(widget)

    def segmenter(self) -> SegmentWidget | None:
        """The viewer's Segment widget, or None when none was opened or it was closed.

        A widget whose dock was closed counts as closed at once, before Python collects it:
        napari takes it out of its dock, which leaves it hidden and without a parent.
        """
        widget = self._segmenter() if self._segmenter is not None else None
        if widget is None or not is_alive(widget):
            return None
        return None if widget.parent() is None and widget.isHidden() else widget


_SESSIONS: weakref.WeakKeyDictionary[Any, ViewerSession] = weakref.WeakKeyDictionary()


def real_viewer(viewer: napari.Viewer) -> napari.Viewer:
    """Return the viewer object behind ``viewer``, looking through any proxies of it.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer, or a proxy of one (such as the one napari passes to plugin widgets).

    Returns
    -------
    napari.Viewer
        The object that no proxy wraps; ``viewer`` itself when it is no proxy.
    """
    seen = {id(viewer)}
    while (inner := getattr(viewer, "__wrapped__", None)) is not None and id(inner) not in seen:
        seen.add(id(inner))
        viewer = inner
    return viewer


def session_for(viewer: napari.Viewer) -> ViewerSession:
    """Return the session of ``viewer``, creating it the first time it is asked for.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer a widget was given: the viewer itself, or napari's proxy of it.

    Returns
    -------
    ViewerSession
        The same object for every proxy of one viewer; another one for another viewer.
    """
    real = real_viewer(viewer)
    session = _SESSIONS.get(real)
    if session is None or session.viewer is not real:
        session = _SESSIONS[real] = ViewerSession(real)
    return session
