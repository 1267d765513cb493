"""The settings of a fine-tuning round and the result it reports.

:class:`FinetuneSettings` (what a round is told) and :class:`FinetuneResult` (what it gives
back), kept apart from the round itself (:mod:`.finetune`), which re-exports both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .nets import SegmentationNet

#: Learning rates and steps chosen when :attr:`FinetuneSettings.lr` / ``steps`` are None
#: (measured in BENCHMARKS.md): a class the starting model does not know is learned from its
#: head row up, which takes a larger step and three times as many of them; correcting the
#: model's own classes takes small steps, so it does not stray far from what it knows.
NEW_CLASS_LR = 1e-2
NEW_CLASS_STEPS = 300
CORRECTION_LR = 1e-3
CORRECTION_STEPS = 100
#: Steps and learning rate of :meth:`FinetuneSettings.from_scratch`.
FROM_SCRATCH_STEPS = 600
FROM_SCRATCH_LR = 3e-3


@dataclass
class FinetuneSettings:
    """Hyper-parameters of one fine-tuning round.

    Attributes
    ----------
    steps : int or None
        Optimiser steps (of the final model, and of each held-out fold). None (default)
        chooses by the task, as ``lr``: :data:`NEW_CLASS_STEPS` or :data:`CORRECTION_STEPS`.
    lr : float or None
        Peak learning rate of the decoder and head (Adam, cosine decay after a warm-up).
        None (default) chooses by the task: :data:`NEW_CLASS_LR` when the annotations hold a
        class the starting model does not know (it must learn new features), else
        :data:`CORRECTION_LR` (it is being corrected on its own classes, and should not stray
        far from what it knows: see BENCHMARKS.md). See :meth:`for_task`.
    encoder_lr_factor : float
        The encoder's learning rate relative to ``lr``; 0 freezes the encoder.
    batch_size : int
        Crops per step.
    crop : int
        Slices larger than this are trained on ``crop`` x ``crop`` windows, centred on each
        annotated class in turn.
    random_crop_fraction : float
        Fraction of the crops placed uniformly at random instead of on a class.
    anchor_weight : float
        Strength of the pull towards the starting weights (L2-SP); 0 disables it.
    fit_head_first : bool
        Fit the head rows of classes new to the model on frozen features before training.
    augment : {"anatomical", "any"}
        Orientation-preserving augmentation, or flips and right-angle rotations.
    holdout_folds : int
        Folds of the held-out Dice estimate (at most one per annotated slice); below 2, none.
    grad_clip : float
        Gradient norm limit.
    explode_factor : float
        A loss above this many times the first steps' median counts as exploding.
    freeze_norm_stats : bool
        Keep BatchNorm running statistics fixed (default); False lets them follow the
        annotated slices.
    blend_start : float
        After training, move every weight this fraction of the way back to where training
        started (a weight-space ensemble of the starting and the fine-tuned model, as WiSE-FT,
        Wortsman et al., CVPR 2022); 0 keeps the fine-tuned weights.
    precision : {"auto", "float32", "bfloat16"}
        Compute type of the training convolutions: "auto" uses bfloat16 (autocast; weights,
        optimiser and loss stay float32) on CPUs that compute it natively, where a round is
        about a fifth faster with the same Dice, and float32 elsewhere. See BENCHMARKS.md.
    seed : int
        Seed for sampling and augmentation.
    """

    steps: int | None = None
    lr: float | None = None
    encoder_lr_factor: float = 0.1
    batch_size: int = 4
    crop: int = 192
    random_crop_fraction: float = 0.25
    anchor_weight: float = 1e-3
    fit_head_first: bool = True
    augment: str = "anatomical"
    holdout_folds: int = 3
    grad_clip: float = 5.0
    explode_factor: float = 20.0
    freeze_norm_stats: bool = True
    blend_start: float = 0.0
    precision: str = "auto"
    seed: int = 0

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)

    def for_task(self, learns_new_classes: bool) -> FinetuneSettings:
        """Return a copy with the steps and learning rate left to the task filled in.

        Parameters
        ----------
        learns_new_classes : bool
            Whether the annotations hold a class the starting model has no output for.
        """
        steps = self.steps if self.steps and self.steps > 0 else (
            NEW_CLASS_STEPS if learns_new_classes else CORRECTION_STEPS)
        lr = self.lr if self.lr and self.lr > 0 else (
            NEW_CLASS_LR if learns_new_classes else CORRECTION_LR)
        return replace(self, steps=steps, lr=lr)

    @classmethod
    def from_scratch(cls, **overrides) -> FinetuneSettings:
        """Settings for training an untrained network (no starting knowledge to protect).

        Every layer learns at the full rate, BatchNorm statistics follow the data, there is no
        pull towards the (random) starting weights and no head fit on random features; more
        steps at a higher rate than a correction round. Keyword arguments override any field.
        """
        base = dict(steps=FROM_SCRATCH_STEPS, lr=FROM_SCRATCH_LR, encoder_lr_factor=1.0,
                    anchor_weight=0.0, fit_head_first=False, freeze_norm_stats=False)
        return cls(**{**base, **overrides})


@dataclass
class FinetuneResult:
    """Outcome of a fine-tuning round.

    Attributes
    ----------
    net : SegmentationNet
        The fine-tuned network (CPU, eval mode); the starting network is never modified.
    class_names : list of str
        Names of the network's classes.
    slices : list of int
        The annotated slices it was trained on.
    dice_before : dict
        Dice per foreground class of the starting model on the annotated slices (it trained on
        none of them).
    dice_after : dict
        Held-out Dice per class of the fine-tuning recipe: each annotated slice scored by a
        model trained the same way without it (k-fold). Empty with one annotated slice;
        without the classes in ``unestimated``.
    dice_train : dict
        Dice of the fine-tuned model on its own training slices (how well it fits them, not
        how well it generalises).
    steps : int
        Optimiser steps of the final model.
    stopped : str or None
        Why training stopped early, in plain words (NaN or exploding loss), else None.
    settings : dict
        The hyper-parameters used.
    folds : int
        Folds of the held-out estimate (0 when there is none).
    pending : str or None
        Why ``dice_after`` is empty although there are folds: the held-out check has not
        finished (the model is handed out before it) or was cancelled; None once it ran.
    """

    net: SegmentationNet
    class_names: list[str]
    slices: list[int]
    dice_before: dict[str, float]
    dice_after: dict[str, float]
    dice_train: dict[str, float]
    steps: int
    stopped: str | None = None
    settings: dict = field(default_factory=dict)
    folds: int = 0
    pending: str | None = None

    @property
    def unestimated(self) -> list[str]:
        """Classes left out of ``dice_after`` although there are folds.

        No fold that trained on them scored a slice where they are drawn (typically, a class
        drawn on one annotated slice only).
        """
        if not self.folds or self.pending:
            return []
        return [name for name in self.class_names[1:] if name not in self.dice_after]

    @property
    def heldout_description(self) -> str:
        """Plain words for what ``dice_after`` was measured on."""
        if not self.folds:
            return "no held-out estimate: at least two annotated slices are needed"
        if self.pending:
            return f"no held-out estimate yet: {self.pending}"
        missing = ", ".join(self.unestimated)
        if not self.dice_after:
            return (f"no held-out estimate: {missing or 'every class'} drawn on too few of the "
                    f"{len(self.slices)} annotated slices (draw each class on two or more)")
        text = (f"held-out: each of the {len(self.slices)} annotated slices scored by a model "
                f"fine-tuned without it ({self.folds}-fold)")
        if missing:
            text += (f"; none for {missing}, drawn on too few annotated slices (a model trained "
                     "without those slices never saw it)")
        return text

    @property
    def improved(self) -> bool | None:
        """Whether the held-out Dice beats the starting model's, on the classes it estimates.

        None without an estimate.
        """
        means = self.heldout_means
        return None if means is None else bool(means[1] > means[0])

    @property
    def heldout_means(self) -> tuple[float, float] | None:
        """Mean Dice (starting model, held-out) over the classes ``dice_after`` estimates."""
        if not self.dice_after:
            return None
        before = float(np.mean([self.dice_before[c] for c in self.dice_after]))
        return before, float(np.mean(list(self.dice_after.values())))

    def metadata(self, parent: str) -> dict:
        """Return the model metadata (lineage, data, scores) to save with the network."""
        return {
            "parent": parent,
            "classes": list(self.class_names),
            "num_annotated_slices": len(self.slices),
            "slices": list(self.slices),
            "hyperparameters": dict(self.settings),
            "steps": self.steps,
            "stopped": self.stopped,
            "dice_before": dict(self.dice_before),
            "dice_after": dict(self.dice_after),
            "dice_after_measured_on": self.heldout_description,
            "dice_after_missing": list(self.unestimated),
            "dice_train": dict(self.dice_train),
            "improved": self.improved,
        }


