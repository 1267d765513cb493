"""A small live plot of training loss and Dice against optimiser step, drawn with QPainter.

No plotting library is needed: the widget keeps the points it was given and redraws itself.
Loss uses the left axis (scaled to the data), Dice the right axis (fixed to [0, 1]).
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import (
    QColor,
    QFontMetrics,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
)
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor(230, 120, 40)
DICE_COLOR = QColor(60, 150, 230)


def _nice_max(value: float) -> float:
    """Round ``value`` up to 1, 2 or 5 times a power of ten (at least a small positive number)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    """Short text for an axis tick or a latest value."""
    if value == 0:
        return "0"
    if abs(value) >= 100 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def step_text(value: float) -> str:
    """A step number as a whole number (120, not 1.2e+02)."""
    return str(int(round(value)))


class LossPlot(QWidget):
    """Live line plot of loss (left axis) and Dice (right axis, 0 to 1) against step.

    Parameters
    ----------
    parent : QWidget, optional
        Parent widget.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._dices: list[float | None] = []
        self._total: int = 0
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss (orange, left axis) and Dice on the annotated slices "
                        "(blue, right axis) after each step")

    # ---------------------------------------------------------------- data
    @property
    def steps(self) -> list[int]:
        """Steps of the points added so far."""
        return list(self._steps)

    @property
    def losses(self) -> list[float]:
        """Loss values of the points added so far."""
        return list(self._losses)

    @property
    def dices(self) -> list[float | None]:
        """Dice values of the points added so far (None where none was given)."""
        return list(self._dices)

    @property
    def total(self) -> int:
        """Number of steps the x axis spans (0: fit to the data)."""
        return self._total

    def __len__(self) -> int:
        return len(self._steps)

    def set_total(self, total: int) -> None:
        """Fix the x axis to span ``0 .. total`` steps (0 fits the axis to the data)."""
        self._total = max(0, int(total))
        self.update()

    def add_point(self, step: int, loss: float, dice: float | None = None) -> None:
        """Append one point and redraw.

        Parameters
        ----------
        step : int
            Optimiser step.
        loss : float
            Training loss at that step (non-finite values are kept but not drawn).
        dice : float, optional
            Dice in [0, 1] at that step.
        """
        self._steps.append(int(step))
        self._losses.append(float(loss))
        self._dices.append(None if dice is None else float(dice))
        self.update()

    def clear(self) -> None:
        """Forget all points (the x-axis span is kept) and redraw."""
        self._steps.clear()
        self._losses.clear()
        self._dices.clear()
        self.update()

    def latest_text(self) -> str:
        """The latest values in words, e.g. ``"step 3/10 · loss 0.512 · Dice 0.83"``."""
        if not self._steps:
            return "no training steps yet"
        step = f"step {self._steps[-1]}" + (f"/{self._total}" if self._total else "")
        parts = [step, f"loss {_fmt(self._losses[-1])}"]
        if self._dices[-1] is not None:
            parts.append(f"Dice {self._dices[-1]:.2f}")
        return " · ".join(parts)

    # ------------------------------------------------------------- drawing
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        """Preferred size."""
        return QSize(320, 170)

    def _x_range(self) -> tuple[float, float]:
        lo = min(self._steps, default=0)
        hi = max(self._total, max(self._steps, default=1))
        return float(min(lo, 0)), float(max(hi, lo + 1))

    def _loss_max(self) -> float:
        finite = [v for v in self._losses if math.isfinite(v)]
        return _nice_max(max(finite, default=1.0))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        """Draw axes, lines and the latest values."""
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._draw(painter)
        finally:
            painter.end()

    def _draw(self, painter: QPainter) -> None:
        palette = self.palette()
        fg = palette.color(QPalette.ColorRole.WindowText)
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        metrics = QFontMetrics(self.font())
        th = metrics.height()
        left = metrics.horizontalAdvance("0.000") + 10
        right = metrics.horizontalAdvance("1.0") + 12
        plot = QRectF(left, th + 6, max(10, self.width() - left - right),
                      max(10, self.height() - 2 * th - 16))

        # title line with the latest values
        painter.setPen(fg)
        painter.drawText(QRectF(0, 2, self.width(), th), Qt.AlignmentFlag.AlignCenter,
                         self.latest_text())

        # frame, ticks and axis labels
        grid = QColor(fg)
        grid.setAlpha(60)
        x0, x1 = self._x_range()
        loss_max = self._loss_max()
        for i in range(5):
            frac = i / 4
            y = plot.bottom() - frac * plot.height()
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(LOSS_COLOR)
            painter.drawText(QRectF(0, y - th / 2, left - 4, th),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             _fmt(frac * loss_max))
            painter.setPen(DICE_COLOR)
            painter.drawText(QRectF(plot.right() + 4, y - th / 2, right - 4, th),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{frac:.2g}")
        painter.setPen(QPen(fg, 1))
        painter.drawRect(plot)
        bottom = QRectF(plot.left(), plot.bottom() + 2, plot.width(), th)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignLeft, step_text(x0))
        painter.drawText(bottom, Qt.AlignmentFlag.AlignRight, step_text(x1))
        painter.drawText(bottom, Qt.AlignmentFlag.AlignHCenter, "step")
        painter.setPen(LOSS_COLOR)
        painter.drawText(QRectF(2, plot.bottom() + 2, left, th), Qt.AlignmentFlag.AlignLeft,
                         "loss")
        painter.setPen(DICE_COLOR)
        painter.drawText(QRectF(plot.right(), plot.bottom() + 2, right, th),
                         Qt.AlignmentFlag.AlignRight, "Dice")

        def to_point(step: int, value: float, vmax: float) -> QPointF:
            fx = (step - x0) / (x1 - x0)
            fy = min(max(value / vmax, 0.0), 1.0)
            return QPointF(plot.left() + fx * plot.width(), plot.bottom() - fy * plot.height())

        self._draw_line(painter, [(s, v) for s, v in zip(self._steps, self._losses, strict=True)
                                  if math.isfinite(v)], loss_max, LOSS_COLOR, to_point)
        self._draw_line(painter, [(s, v) for s, v in zip(self._steps, self._dices, strict=True)
                                  if v is not None and math.isfinite(v)], 1.0, DICE_COLOR,
                        to_point)

    @staticmethod
    def _draw_line(painter: QPainter, points: list[tuple[int, float]], vmax: float,
                   color: QColor, to_point) -> None:
        if not points:
            return
        painter.setPen(QPen(color, 2))
        if len(points) == 1:
            painter.setBrush(color)
            painter.drawEllipse(to_point(*points[0], vmax), 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            return
        path = QPainterPath(to_point(*points[0], vmax))
        for step, value in points[1:]:
            path.lineTo(to_point(step, value, vmax))
        painter.drawPath(path)
