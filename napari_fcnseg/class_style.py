"""Class names and colours of the labels layers the plugin writes.

Every labels layer the plugin writes carries its class names in napari's ``features`` table
(row ``i`` describes label value ``i``), so the status bar reads "class: lesion" instead of
"2", and a fixed colour per class. The palette is documented (README) and differs from the
colours napari gives a labels layer it knows nothing about (such as a ground truth opened
beside it), so the two can be told apart:

===== ==========  =======
value colour      hex
===== ==========  =======
1     orange      #ff8c1a
2     magenta     #e6199a
3     yellow      #ffe119
4     sky blue    #33b3ff
5     lime        #80e626
6     violet      #9966ff
7     red         #e6261a
8     teal        #1ab3a6
===== ==========  =======

Values above 8 repeat the palette.
"""

from __future__ import annotations

from typing import Any

PALETTE = ("#ff8c1a", "#e6199a", "#ffe119", "#33b3ff", "#80e626", "#9966ff", "#e6261a",
           "#1ab3a6")


def class_color(value: int) -> str:
    """Hex colour of label ``value`` (0 is transparent)."""
    return "#00000000" if value == 0 else PALETTE[(value - 1) % len(PALETTE)]


def class_colormap(n_classes: int) -> Any:
    """A napari ``DirectLabelColormap`` with the plugin's colour for values 0..n-1."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, str] = {None: "#00000000"}
    colors.update({v: class_color(v) for v in range(max(256, n_classes))})
    return DirectLabelColormap(color_dict=colors)


def class_features(names: list[str]) -> dict[str, list]:
    """The ``features`` table naming label values 0..n-1."""
    return {"index": list(range(len(names))), "class": list(names)}


def style_labels_layer(layer: Any, names: list[str]) -> None:
    """Give an existing labels layer the plugin's class names and colours."""
    layer.features = class_features(names)
    layer.colormap = class_colormap(len(names))


def legend_html(names: list[str]) -> str:
    """Rich text: a coloured square and the name of every foreground class."""
    items = [f"<span style='color:{class_color(v)}'>&#9632;</span>&nbsp;{name}"
             for v, name in enumerate(names) if v > 0]
    return "&nbsp;&nbsp; ".join(items)
