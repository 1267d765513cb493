"""The bad-input matrix of the widgets: what a person can do to Segment and Review and Fine-tune.

Each row names a case that ``test_widget_bad_input.py`` runs in a napari viewer, with the
widgets docked as napari's Plugins menu docks them, and what it must observe: the exact
notifications (level and text), the widget's status line, what became of the run's future,
which layers the widget added and which model it saved. The image is always the layer
``scan``; its labels, when the case has some, are ``scan labels``. Besides what a row names,
every case checks that no exception escaped into Qt, that every notification is a plain
message (no exception or traceback), and that the data of the person's own layers did not
change. ``docs/reliability.md`` shows this table (``python -m tests.reliability.cases``).
"""

from __future__ import annotations

from dataclasses import dataclass

SEGMENT, FINETUNE = "Segment", "Review and Fine-tune"
WROTE = "Wrote {} slice(s) into 'scan labels'."
ONE_SLICE = ("Saved 'scan-ft'. With one annotated slice no held-out estimate is possible: "
             "annotate or review a second slice to measure whether it is better.")
CANCELLED = "Fine-tuning cancelled; the model is unchanged."
NON_FINITE = ("the image contains NaN or infinite values; they were treated as the lowest "
              "intensity")


@dataclass(frozen=True)
class WidgetCase:
    """One row of the widget matrix.

    Attributes
    ----------
    id : str
        The test id.
    widget : str
        The widget's display name in ``napari.yaml``.
    what : str
        The input or the action, in words.
    expected : str
        What the person must get, in words.
    outcome : str
        The run's future: ``"refused"`` (an error at once), ``"failed"`` (an error later),
        ``"done"`` or ``"cancelled"``.
    notes : tuple of (str, str)
        Every notification shown, in order, as (level, text).
    status : str
        The widget's status line at the end ("" when the widget is gone with its viewer).
    new_layers : tuple of str
        Names of the layers the widget added.
    saves : str
        The model the run saved ("" for none).
    """

    id: str
    widget: str
    what: str
    expected: str
    outcome: str
    notes: tuple[tuple[str, str], ...] = ()
    status: str = ""
    new_layers: tuple[str, ...] = ()
    saves: str = ""


def _error(text: str) -> tuple[tuple[str, str], ...]:
    return (("error", text),)


REFUSED = "refused with one plain error; nothing changes"
SEGMENTED = "segmented into a new labels layer, no error"

WIDGET_CASES: list[WidgetCase] = [
    # ----------------------------------------------------------------- Segment: images
    WidgetCase("seg-rgb", SEGMENT, "an RGB image", REFUSED, "refused", _error(
        "'scan' is a colour (RGB/RGBA) image; the network segments grayscale CT/MR images "
        "only."), status="'scan' is a colour (RGB/RGBA) image; the network segments grayscale "
        "CT/MR images only."),
    WidgetCase("seg-nan-inf", SEGMENT, "NaN, +Inf and -Inf voxels among finite ones",
               "segmented; a warning says how those voxels were treated", "done",
               (("warning", NON_FINITE),), WROTE.format(4), ("scan labels",)),
    WidgetCase("seg-all-nan", SEGMENT, "an image that is all NaN", REFUSED, "failed", _error(
        "Segmentation failed: the image contains no finite values (all NaN or infinite)"),
        "Segmentation failed: the image contains no finite values (all NaN or infinite)"),
    WidgetCase("seg-empty", SEGMENT, "a 0-size image (0 x 32 x 32)", REFUSED, "refused",
               _error("'scan' holds no image data (shape (0, 32, 32))."),
               "'scan' holds no image data (shape (0, 32, 32))."),
    WidgetCase("seg-constant", SEGMENT, "a constant int16 image", SEGMENTED, "done",
               status=WROTE.format(4), new_layers=("scan labels",)),
    WidgetCase("seg-constant-1e20", SEGMENT, "a constant float32 image of 1e20", SEGMENTED,
               "done", status=WROTE.format(4), new_layers=("scan labels",)),
    WidgetCase("seg-uint64-top", SEGMENT, "uint64 values near 2**64", SEGMENTED, "done",
               status=WROTE.format(4), new_layers=("scan labels",)),
    WidgetCase("seg-4d", SEGMENT, "a 4D image (2 x 3 x 32 x 32): 6 slices", SEGMENTED, "done",
               status=WROTE.format(6), new_layers=("scan labels",)),
    WidgetCase("seg-5d", SEGMENT, "a 5D image (2 x 2 x 2 x 16 x 16): 8 slices", SEGMENTED,
               "done", status=WROTE.format(8), new_layers=("scan labels",)),
    WidgetCase("seg-bool", SEGMENT, "a bool image (a mask)", REFUSED, "refused", _error(
        "'scan' is a yes/no (boolean) mask, not an image; choose the CT or MR scan "
        "instead."), "'scan' is a yes/no (boolean) mask, not an image; choose the CT or MR "
        "scan instead."),
    WidgetCase("seg-complex", SEGMENT, "a complex64 image: napari itself refuses the layer",
               "no layer is left behind; Segment asks for an image", "refused",
               _error("Choose an image layer to segment first."),
               "Choose an image layer to segment first."),
    # ----------------------------------------------------------------- Segment: labels
    WidgetCase("seg-labels-other-shape", SEGMENT, "'scan labels' exists with another shape",
               "a new labels layer; the other one untouched", "done",
               status="Wrote 4 slice(s) into 'scan labels [1]'.",
               new_layers=("scan labels [1]",)),
    WidgetCase("seg-labels-value-5", SEGMENT, "'scan labels' uses label 5, the model knows 3 "
               "classes", REFUSED, "refused", _error(
                   "'scan labels' contains label 5, but model 'tiny' knows only 3 classes "
                   "(background, organ, lesion). Choose a model with matching classes, or "
                   "rename the labels layer to start a new one."),
               "'scan labels' contains label 5, but model 'tiny' knows only 3 classes "
               "(background, organ, lesion). Choose a model with matching classes, or rename "
               "the labels layer to start a new one."),
    # ----------------------------------------------------------------- Segment: mid-run
    WidgetCase("seg-cancel", SEGMENT, "Cancel while segmenting", "stops; labels unchanged",
               "cancelled", status="Cancelled; the labels were not changed."),
    WidgetCase("seg-close-viewer", SEGMENT, "the viewer is closed while segmenting",
               "the run stops quietly; its future resolves", "cancelled"),
    WidgetCase("seg-delete-image", SEGMENT, "the image layer is deleted while segmenting",
               "one plain error; nothing is written", "failed", _error(
                   "Could not write the segmentation: the image layer 'scan' was removed "
                   "meanwhile"), "Could not write the segmentation: the image layer 'scan' "
               "was removed meanwhile"),
    WidgetCase("seg-runtime-error", SEGMENT, "torch fails in the worker (RuntimeError: out of "
               "memory)", "one plain error; the widget is free again", "failed", _error(
                   "Segmentation failed: not enough memory: you tried to allocate 9 GB"),
               "Segmentation failed: not enough memory: you tried to allocate 9 GB"),
    # ----------------------------------------------------------------- Fine-tune: input
    WidgetCase("ft-rgb-image", FINETUNE, "labels drawn on an RGB image", REFUSED, "refused",
               _error("'scan' is a colour (RGB/RGBA) image; the network segments grayscale "
                      "CT/MR images only."), "'scan' is a colour (RGB/RGBA) image; the "
               "network segments grayscale CT/MR images only."),
    WidgetCase("ft-nan-inf", FINETUNE, "NaN and Inf voxels in the image",
               "trains and saves; a warning says how those voxels were treated", "done",
               (("warning", NON_FINITE),), ONE_SLICE, saves="scan-ft"),
    WidgetCase("ft-labels-other-shape", FINETUNE, "labels of another shape than the image",
               REFUSED, "refused", _error(
                   "'scan' (4, 32, 32) and 'scan labels' (4, 16, 16) differ in shape; choose "
                   "the labels drawn on this image."),
               "'scan' (4, 32, 32) and 'scan labels' (4, 16, 16) differ in shape; choose the "
               "labels drawn on this image."),
    WidgetCase("ft-float-labels", FINETUNE, "float labels: napari itself refuses the layer",
               "no layer is left behind; the widget asks for labels", "refused",
               _error("Choose a labels layer (your corrected segmentation) first."),
               "Choose a labels layer (your corrected segmentation) first."),
    WidgetCase("ft-label-300", FINETUNE, "label value 300 (uint16 labels)", REFUSED,
               "refused", _error("'scan labels' uses label values outside 0..255; classes "
                                 "must be numbered 1, 2, 3, ..."),
               "'scan labels' uses label values outside 0..255; classes must be numbered 1, "
               "2, 3, ..."),
    WidgetCase("ft-no-annotation", FINETUNE, "no slice edited or reviewed", REFUSED,
               "refused", _error("Nothing to learn from yet: correct some slices, or mark "
                                 "slices that are already right as reviewed."),
               "Nothing to learn from yet: correct some slices, or mark slices that are "
               "already right as reviewed."),
    WidgetCase("ft-one-slice", FINETUNE, "one annotated slice, held-out check on",
               "trains and saves; says no held-out estimate is possible", "done",
               status=ONE_SLICE, saves="scan-ft"),
    WidgetCase("ft-bool-labels", FINETUNE, "bool labels (napari stores them as 0/1)",
               "trains class 1 and saves", "done", status=ONE_SLICE, saves="scan-ft"),
    # ----------------------------------------------------------------- Fine-tune: mid-run
    WidgetCase("ft-cancel", FINETUNE, "Cancel while fine-tuning",
               "stops; nothing saved; labels unchanged", "cancelled", (("info", CANCELLED),),
               CANCELLED),
    WidgetCase("ft-close-viewer", FINETUNE, "the viewer is closed while fine-tuning",
               "stops as a cancel; nothing saved; its future resolves", "cancelled",
               (("info", CANCELLED),)),
    WidgetCase("ft-delete-image", FINETUNE, "the image layer is deleted while fine-tuning",
               "the round (on its copy of the slices) finishes and is saved", "done",
               status=ONE_SLICE, saves="scan-ft"),
]


def _observed(case: WidgetCase) -> str:
    parts = [f"{level}: “{text}”" for level, text in case.notes] or ["no notification"]
    if case.status and case.status not in [text for _, text in case.notes]:
        parts.append(f"status: “{case.status}”")
    parts += [f"adds `{name}`" for name in case.new_layers]
    if case.saves:
        parts.append(f"saves `{case.saves}`")
    parts.append({"refused": "future fails at once", "failed": "future fails",
                  "done": "future resolves", "cancelled": "future cancelled"}[case.outcome])
    return "; ".join(parts)


def widget_markdown() -> list[str]:
    """The GUI section of docs/reliability.md, as lines."""
    lines = ["", "## Widgets", "",
             "Generated from `tests/reliability/widget_cases.py`; "
             "`tests/reliability/test_widget_bad_input.py` runs every row in a napari viewer "
             "with the widgets docked as napari's Plugins menu docks them, and checks exactly "
             "the notifications, status line, future, new layers and saved model shown here, "
             "plus, for every row: no exception escaped into Qt, every notification is a plain "
             "message, and the data of the person's own image and labels layers did not "
             "change. The image is the layer `scan`, its labels `scan labels`.", "",
             "| case | widget | input or action | expected | observed |", "|---|---|---|---|---|"]
    lines += [f"| `{c.id}` | {c.widget} | {c.what} | {c.expected} | {_observed(c)} |"
              for c in WIDGET_CASES]
    return lines
