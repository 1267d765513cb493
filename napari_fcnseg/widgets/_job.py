"""One run at a time behind a widget: a napari thread worker, a Future, busy state, cancel.

Segment and Fine-tune both run a core progress generator (see
:mod:`napari_fcnseg.core.progress`) in a napari thread worker and hand the caller a
:class:`concurrent.futures.Future`. :class:`BackgroundJob` is that lifecycle, written once:

- the future resolves only after the worker finished and the job is free again, so a caller
  may start the next run at once: to the value given to :meth:`BackgroundJob.resolve`, with
  the widget's error for :meth:`BackgroundJob.reject` or for what the worker raised, or as the
  widget's ``on_cancelled`` says for a run that ended without an outcome (cancelled here or
  in napari's activity dock);
- progress records reach the widget only while it lives and the run is not cancelled, at
  most every ``progress_interval`` seconds (the last one always), and drive the activity
  dock's bar when the total was not known up front;
- the worker's signals go to closures, not to the widget's bound methods: Qt drops
  connections to a deleted widget, and the future must resolve even when the dock is closed
  mid-run. The widget's hooks are still called then; they check :func:`~._common.is_alive`
  before touching Qt objects, as the job does;
- a ``RuntimeError`` raised in the worker (torch's, e.g. out of memory) fails the run like any
  other error (:class:`WorkerError`): superqt's worker takes one for its own deletion, only
  warns, and never says it finished;
- the plugin's own warnings raised in the worker (e.g. NaN voxels in the image) are shown as
  napari warnings, once each per run; other libraries' warnings are not the person's concern.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ._common import fail_future, is_alive, notify_warning

CANCELLING = "Cancelling..."


class WorkerError(Exception):
    """A ``RuntimeError`` raised in a worker, passed on as an error superqt reports."""


def _runtime_errors_reported(function: Callable[..., Any]) -> Callable[..., Any]:
    """The generator function ``function``, raising :class:`WorkerError` for a RuntimeError."""
    def run(*args: Any, **kwargs: Any):
        try:
            return (yield from function(*args, **kwargs))
        except RuntimeError as exc:
            raise WorkerError(str(exc)) from exc

    run.__name__ = run.__qualname__ = getattr(function, "__name__", "run")
    return run


@dataclass(eq=False)
class _Run:
    """The state of one run (a stale worker's signals find their own run, not the next)."""

    worker: Any
    future: Future
    on_returned: Callable[[Any], None]
    drive_bar: bool
    cancelled: bool = False
    committed: bool = False  # the outcome is being made: too late to cancel
    outcome: tuple[bool, Any] | None = None  # (True, value) or (False, error message)
    finished: bool = False
    last_progress: float = 0.0
    warned: set[str] = field(default_factory=set)  # warnings shown (once each)


class BackgroundJob:
    """Run a progress generator in a napari thread worker for ``owner``, one run at a time.

    Parameters
    ----------
    owner : QWidget
        The widget the job works for; nothing of it is touched once it is deleted.
    error : type of Exception
        What a refused or failed run's future holds (with the message shown to the user).
    status_label : QLabel
        Where the job says "Cancelling..." and shows failures.
    set_busy : callable
        ``set_busy(busy)`` enables and disables the owner's buttons.
    on_progress : callable
        Called on the main thread with the progress records let through.
    describe_error : callable
        The message for an exception the worker raised.
    on_cancelled : callable
        Settles the future of a run that ended without an outcome (it is not done yet).
    progress_interval : float
        Seconds between progress records passed on (0: every record); each repaint of a
        progress bar pauses the viewer.
    """

    def __init__(self, owner: Any, error: type[Exception], status_label: Any, *,
                 set_busy: Callable[[bool], None], on_progress: Callable[[Any], None],
                 describe_error: Callable[[BaseException], str],
                 on_cancelled: Callable[[Future], None],
                 progress_interval: float = 0.0) -> None:
        self._owner = owner
        self._error = error
        self._status_label = status_label
        self._set_busy = set_busy
        self._on_progress = on_progress
        self._describe_error = describe_error
        self._on_cancelled = on_cancelled
        self.progress_interval = progress_interval
        self._run: _Run | None = None

    # ------------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """True from :meth:`start` until the run's future is about to resolve."""
        return self._run is not None

    @property
    def worker(self) -> Any:
        """The running napari worker, or None."""
        return None if self._run is None else self._run.worker

    @property
    def future(self) -> Future | None:
        """The running run's future, or None."""
        return None if self._run is None else self._run.future

    @property
    def cancelled(self) -> bool:
        """True once the running run was asked to stop (here or in napari's activity dock)."""
        return self._run is not None and self._run.cancelled

    def fail(self, future: Future, message: str) -> Future:
        """Show ``message`` (also in the status label) and fail ``future`` with it."""
        label = self._status_label if is_alive(self._owner) else None
        return fail_future(future, message, self._error, label)

    def refuse(self, message: str) -> Future:
        """A future that already holds the error ``message``, shown to the user."""
        return self.fail(Future(), message)

    # ------------------------------------------------------------------------ a run
    def start(self, function: Callable[..., Any], *args: Any, desc: str,
              on_returned: Callable[[Any], None], total: int = 0, **kwargs: Any) -> Future:
        """Run the generator ``function(*args, **kwargs)`` in a napari thread worker.

        Parameters
        ----------
        function : callable
            A generator function yielding progress records and returning the result.
        *args, **kwargs
            Its arguments.
        desc : str
            The run's name in napari's activity dock.
        on_returned : callable
            Called on the main thread with the result (also after a cancel: check
            :attr:`cancelled`); it calls :meth:`resolve` or :meth:`reject`, or :meth:`commit`
            and one of them later.
        total : int
            Steps in the activity dock's bar; 0 when unknown, so the records set it.

        Returns
        -------
        concurrent.futures.Future
            Settled as the module docstring says.

        Raises
        ------
        RuntimeError
            If a run is going (check :attr:`busy` first and :meth:`refuse`).
        """
        from napari.qt.threading import create_worker

        if self.busy:
            raise RuntimeError("a run is already going")
        worker = create_worker(_runtime_errors_reported(function), *args, _ignore_errors=True,
                               _progress={"total": total, "desc": desc}, **kwargs)
        run = _Run(worker, Future(), on_returned, drive_bar=total == 0)
        worker.yielded.connect(lambda record: self._yielded(run, record))
        worker.warned.connect(lambda args: self._warned(run, args))
        worker.returned.connect(lambda result: run.on_returned(result))
        worker.errored.connect(lambda exc: self._errored(run, exc))
        worker.aborted.connect(lambda: self._aborted(run))
        worker.finished.connect(lambda: self._finished(run))
        self._run = run
        self._set_busy(True)
        worker.start()
        return run.future

    def cancel(self) -> None:
        """Stop the run after its current step, unless its outcome is already being made."""
        run = self._run
        if run is None or run.committed:
            return
        run.cancelled = True
        run.worker.quit()
        if is_alive(self._owner):
            self._status_label.setText(CANCELLING)

    def commit(self) -> None:
        """The outcome is being made (e.g. written into layers): cancelling is too late now."""
        if self._run is not None:
            self._run.committed = True

    def resolve(self, value: Any) -> None:
        """The run's outcome is ``value``; the future resolves once the worker finished."""
        self._settle_with((True, value))

    def reject(self, message: str) -> None:
        """The run failed with ``message``; its future holds the widget's error once done."""
        self._settle_with((False, message))

    # ------------------------------------------------------------------------ signals
    def _settle_with(self, outcome: tuple[bool, Any]) -> None:
        run = self._run
        if run is None or run.outcome is not None:
            return
        run.committed, run.outcome = True, outcome
        if run.finished:
            self._settle(run)

    def _yielded(self, run: _Run, record: Any) -> None:
        if run is not self._run or run.cancelled or not is_alive(self._owner):
            return
        now = time.monotonic()
        if (record.step < record.total and now - run.last_progress < self.progress_interval
                and getattr(record, "result", None) is None):  # a result is never skipped
            return
        run.last_progress = now
        self._on_progress(record)
        # last: napari's bar processes pending events when it moves, and so may end the run
        # here; a progress record shown after the run's last word would replace it
        pbar = getattr(run.worker, "pbar", None)
        if run.drive_bar and pbar is not None:
            if pbar.total != record.total:
                pbar.total = record.total
            pbar.update(record.step - pbar.n)

    def _warned(self, run: _Run, args: tuple) -> None:
        message, category = args[0], args[1]
        text = str(message)
        if (run.cancelled or not getattr(category, "__module__", "").startswith("napari_fcnseg")
                or text in run.warned):
            return
        run.warned.add(text)
        notify_warning(text)

    def _errored(self, run: _Run, exc: BaseException) -> None:
        if run.outcome is None:  # a failed run is past cancelling
            run.committed, run.outcome = True, (False, self._describe_error(exc))

    def _aborted(self, run: _Run) -> None:
        if run is self._run and not run.committed:
            run.cancelled = True
            if is_alive(self._owner):
                self._status_label.setText(CANCELLING)

    def _finished(self, run: _Run) -> None:
        run.finished = True
        if run.committed and run.outcome is None:
            return  # the widget settles it with resolve() or reject()
        self._settle(run)

    def _settle(self, run: _Run) -> None:
        """Free the job (and the owner's buttons), then settle the run's future."""
        if self._run is run:
            self._run = None
            if is_alive(self._owner):
                self._set_busy(False)
        future = run.future
        if future.done():
            return
        if run.outcome is not None and run.outcome[0]:
            future.set_result(run.outcome[1])
        elif run.cancelled or run.outcome is None:
            self._on_cancelled(future)
        else:
            self.fail(future, run.outcome[1])
