import math

import numpy as np
import pytest
from qtpy.QtGui import QColor

from napari_fcnseg.widgets.loss_plot import DICE_COLOR, LOSS_COLOR, LossPlot

pytestmark = pytest.mark.gui


def _colour_pixels(widget, colour: QColor) -> int:
    """Count pixels close to ``colour`` in a rendering of ``widget``."""
    image = widget.grab().toImage()
    count = 0
    for y in range(0, image.height()):
        for x in range(0, image.width()):
            c = image.pixelColor(x, y)
            if (abs(c.red() - colour.red()) < 30 and abs(c.green() - colour.green()) < 30
                    and abs(c.blue() - colour.blue()) < 30):
                count += 1
    return count


def test_stores_points_and_clears(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    assert len(plot) == 0
    assert plot.latest_text() == "no training steps yet"
    plot.set_total(10)
    plot.add_point(1, 0.9, 0.2)
    plot.add_point(2, 0.7)
    plot.add_point(3, 0.5, 0.6)
    assert plot.steps == [1, 2, 3]
    assert plot.losses == pytest.approx([0.9, 0.7, 0.5])
    assert plot.dices == [pytest.approx(0.2), None, pytest.approx(0.6)]
    assert plot.total == 10
    assert plot.latest_text() == "step 3/10 · loss 0.5 · Dice 0.60"
    plot.clear()
    assert plot.steps == [] and plot.losses == [] and plot.dices == []
    assert plot.total == 10


def test_renders_lines(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    empty = plot.grab()
    assert not empty.isNull() and empty.width() == 300
    lines_before = _colour_pixels(plot, LOSS_COLOR)
    plot.set_total(20)
    for step, loss in enumerate(np.linspace(1.2, 0.3, 20), start=1):
        plot.add_point(step, float(loss), dice=min(1.0, step / 20))
    loss_px = _colour_pixels(plot, LOSS_COLOR)
    dice_px = _colour_pixels(plot, DICE_COLOR)
    # the axis labels are drawn in the line colours, the lines add many more pixels
    assert loss_px > lines_before + 50
    assert dice_px > 50


def test_non_finite_loss_is_kept_but_not_drawn(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(200, 150)
    plot.add_point(1, float("nan"))
    plot.add_point(2, float("inf"), 0.5)
    assert math.isnan(plot.losses[0])
    assert not plot.grab().isNull()
    assert "loss inf" in plot.latest_text()


def test_step_ticks_are_whole_numbers():
    from napari_fcnseg.widgets.loss_plot import step_text

    assert step_text(120) == "120" and step_text(1000.0) == "1000" and step_text(0) == "0"
