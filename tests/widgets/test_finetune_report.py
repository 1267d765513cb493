"""The round's report: what the verdict compares and what it says it could not measure."""

from napari_fcnseg.core.finetune import FinetuneResult
from napari_fcnseg.widgets._finetune_report import dice_table, verdict


def _result(after, folds=3):
    return FinetuneResult(None, ["background", "organ", "lesion"], [1, 4, 7],
                          {"organ": 0.90, "lesion": 0.60}, after,
                          {"organ": 0.99, "lesion": 0.95}, 6, folds=folds)


def test_verdict_compares_only_the_classes_held_out_could_measure():
    result = _result({"organ": 0.95})
    text = verdict(result, "bundled", "mine")
    # organ 0.95 against the starting model's organ 0.90, not against its mean with lesion
    assert result.improved is True
    assert "better than 'bundled'" in text and "0.950 vs 0.900" in text
    assert "lesion not measured" in text
    assert "none for lesion" in dice_table(result)


def test_verdict_without_any_measurable_class_says_why():
    result = _result({})
    assert result.improved is None
    text = verdict(result, "bundled", "mine")
    assert "No held-out estimate: organ, lesion drawn on too few annotated slices" in text
    assert "one annotated slice" not in text
    assert "no held-out estimate: organ, lesion" in result.heldout_description
