"""What a fine-tuning round tells the person: Dice that says what it was measured on.

The starting model is scored on the annotated slices (it trained on none of them); the
fine-tuned recipe on annotated slices it did not train on (k-fold); the saved model on its own
training slices, shown only as such. The verdict compares the first two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_fcnseg.core.finetune import FinetuneResult


def _cell(scores: dict[str, float], name: str) -> str:
    value = scores.get(name)
    return "–" if value is None else f"{value:.3f}"


def dice_table(result: FinetuneResult) -> str:
    """Rich text: Dice per class of the starting model, held-out after, and training slices.

    Parameters
    ----------
    result : FinetuneResult
        The round's result (``dice_before``, ``dice_after``, ``dice_train``, ``slices``).
    """
    names = list(dict.fromkeys([*result.dice_before, *result.dice_after, *result.dice_train]))
    rows = "".join(
        f"<tr><td>{name}</td><td align='right'>{_cell(result.dice_before, name)}</td>"
        f"<td align='right'>{_cell(result.dice_after, name)}</td>"
        f"<td align='right'>{_cell(result.dice_train, name)}</td></tr>" for name in names)
    n = len(result.slices)
    return (
        f"Dice on the {n} annotated slice(s):<table cellspacing='4'>"
        "<tr><th align='left'>class</th><th>starting<br>model</th><th>fine-tuned<br>held-out"
        "</th><th>training<br>slices</th></tr>"
        f"{rows}</table><small>starting model: on all annotated slices (it learned none of "
        f"them). Held-out: {result.heldout_description.removeprefix('held-out: ')}. Training "
        "slices: the saved model on the slices it learned from; high values there are not "
        "progress.</small>")


def verdict(result: FinetuneResult, base: str, saved: str) -> str:
    """One plain sentence: is the new model better than ``base`` on unseen annotated slices."""
    means = result.heldout_means
    if means is None and not result.folds:
        return (f"Saved '{saved}'. With one annotated slice no held-out estimate is possible: "
                "annotate or review a second slice to measure whether it is better.")
    if means is None:
        reason = (f"{', '.join(result.unestimated)} drawn on too few annotated slices; draw "
                  "each class on a second slice" if result.unestimated else
                  "no class was drawn on the annotated slices; draw one")
        return f"Saved '{saved}'. No held-out estimate: {reason} to measure whether it is better."
    before, after = means
    measured = f"mean Dice {after:.3f} vs {before:.3f}"
    if result.unestimated:
        measured += f"; {', '.join(result.unestimated)} not measured"
    if result.improved:
        return (f"Saved '{saved}': better than '{base}' on annotated slices it did not train on "
                f"({measured}); it is now selected for segmenting.")
    return (f"Saved '{saved}', but it is not better than '{base}' on annotated slices it did "
            f"not train on ({measured}); '{base}' is selected "
            "for segmenting. Annotate more slices, or more varied ones, and try again.")
