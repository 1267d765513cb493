"""Learning benchmark: fine-tuning vs a random forest on real labelled scans, from a few slices.

For every case the same annotated slices (full labels, the rest of the volume unlabelled) are
given to

* ``fine-tuned``: :func:`napari_fcnseg.core.finetune.finetune` from the bundled model, then
  :func:`napari_fcnseg.core.predict.predict` on the other slices;
* ``forest``: scikit-image ``multiscale_basic_features`` (sigma 1-16, intensity + edges +
  texture, computed per 2D slice) and a scikit-learn ``RandomForestClassifier(n_estimators=50,
  n_jobs=-1, random_state=0)`` trained on the pixels of the annotated slices, predicting the
  other slices;
* ``bundled (start)``: the bundled model unchanged, where its classes mean the same thing as the
  case's (the generated cases; the tumour cases, scored on its "lesion" class). For the spine
  cases its classes (organ / lesion) mean nothing, so no starting Dice is reported.

Usage::

    pip install -e ".[bench]"
    python benchmarks/bench_learning.py                       # all cases, Markdown table
    python benchmarks/bench_learning.py --cases lung1,spine-ct --steps 200 --json out.json
    python benchmarks/bench_learning.py --quick               # smoke run: 3 small cases, 10 steps

Data (fetched with pip on first use, only the data files extracted, cached in
``--cache-dir`` / ``$NAPARI_FCNSEG_BENCH_CACHE`` / ``~/.cache/napari-fcnseg-bench``; never put
them in the repository):

* ``tptbox==1.1.0`` wheel, ``TPTBox/tests/sample_ct`` and ``sample_mri``: a lumbar spine CT crop
  (L2-L4, int16 HU) and a cervical spine T2w MR crop (C5-C7, uint16), 1.5 mm isotropic, NIfTI,
  each with a vertebra-instance mask (``seg-vert``) and a subregion mask (``seg-subreg``). The
  benchmark uses the subregion mask (TPTBox ``Location`` codes), mapped to:

  ============================  ===============================  =================
  class                          subregion codes                  cases
  ============================  ===============================  =================
  1 vertebral body               49 corpus border, 50 corpus,     CT, MR
                                 62 endplate (MR only)
  2 posterior elements           41 arcus, 42 spinous, 43/44      CT, MR
                                 costal (transverse), 45-48
                                 articular processes
  3 intervertebral disc          100                              MR
  4 spinal canal                 60 spinal cord, 61 canal         MR
  ============================  ===============================  =================

  (The instance mask codes 21-23 = L2-L4 in the CT, 5-7 = C5-C7 plus 105/106 discs and
  205-207 endplates in the MR; one class per vertebra would ask a 2D slice model to count
  vertebrae, so the anatomical subregions are used instead.)
* ``totalsegmentator==2.18.0`` source archive, ``tests/reference_files/``: ``abdomen-ct``, an
  abdominal CT at 3 mm (122 x 101 x 30, int16 HU, ``example_ct_sm.nii.gz``) with the
  TotalSegmentator labels its tests compare against (``example_seg.nii.gz``, the "total" task),
  mapped to six structures: liver (5), spleen (1), kidney (2, 3), stomach (6), aorta (52) and
  vertebra (30-33, T11-L2); every other structure is background. The reference is that
  network's output, not a manual tracing, but it is real anatomy with many organs per slice.
* ``pyradiomics==3.0.1`` source archive, ``data/``: ``lung1`` (CT, lung nodule, 512 x 512 x 48,
  5 mm slices), ``brain2`` (MR T1 post-contrast, tumour, 256 x 256 x 23, 6.5 mm) and
  ``breast1`` (MR, breast lesion, crop 120 x 45 x 21, 2.1 mm): NRRD image + label pairs, the
  label 1 = lesion. It is given class 2 ("lesion") with the bundled model's class names
  (background, organ, lesion), so the network keeps its head, as when a user corrects the
  bundled model's output; "organ" is never labelled there and only "lesion" is scored.
* Generated CT and MR (:func:`napari_fcnseg.core.phantoms.generate_volume`, the package's
  sample shape 32 x 256 x 256): seeds 300000 (CT) / 300001 (MR), next case 300002 / 300003.
  The shipped samples use seeds 0 / 1, which are in the bundled model's training seeds
  (0..119, see its model card), so held-out seeds are used instead.
* ``generated-ct-new``: the generated CT with its classes renamed "liver" / "tumour", so the
  round learns both from their head rows up, as for a user's own structures; its next case
  shows whether classes learned from a few slices carry over to another case (the real cases
  are single volumes).

Orientation: every volume is reoriented (nibabel orientation tools, from the NIfTI affine or
the NRRD space directions) to (Z, Y, X) = (inferior->superior, anterior->posterior,
right->left): the plugin's slice axis is the first one, so slices are axial, shown as a
radiologist expects. No volume is cropped or resampled. This matters: the TPTBox arrays are
stored P-I-R (their first axis runs anterior->posterior, so slicing them as stored gives coronal
slices), and brain2's NRRD rows run posterior->anterior (the face at the bottom), unlike lung1
and breast1.

Fine-tuning passes the case's class names and, where :func:`finetune` accepts it, the bundled
model's class names as ``base_class_names``, so head rows are matched by name (the spine
classes get new rows instead of inheriting "organ" / "lesion" by position).

Annotated slices (fixed rule): the foreground slices F (any label present), sorted, are cut
into k equal parts and the middle slice of each part is annotated: ``F[(2i + 1) * len(F) //
(2k)]``, i = 0..k-1; k = 5 for the spine and abdomen cases, 3 for the generated cases. Tumour
cases: k = 2 tumour slices plus one reviewed slice without tumour (all background), the middle
slice of the longer run of tumour-free slices. Each of the three tumours spans only 3 slices, so one
tumour slice (the middle, largest) remains for evaluation.

Scores: Dice per class, pooled over the voxels of all slices that were not annotated (inside
and outside the labelled region, so false positives away from the structure count), by
:func:`napari_fcnseg.core.metrics.dice_per_class`; mean = mean over the scored classes. On the
generated cases also the mean Dice on the whole next case. Beside it, the same Dice after
keeping only the predicted objects that touch the annotated slices (the product's opt-in *Keep
objects: touching reviewed slices*, for single-object tasks such as one tumour), applied to
every scored class of every case and to both methods alike, so the spine rows show what it
costs where a class has several separate objects. Seconds: train (fine-tune round / feature
extraction + forest fit) and predict (the other slices) separately. The fine-tune round runs
with ``holdout_folds=0`` unless ``--holdout-folds`` says otherwise: the k-fold held-out
estimate the product shows the user trains k more models after the final one and does not
change it, so it would only multiply the time; with ``--holdout-folds 3`` the seconds are
those of the product's default round, and the JSON also holds the round's own estimate
(``reported_dice_after``) beside the Dice measured here on the other slices.

Forest details: features are computed on the volume normalised exactly as the network's input
(:func:`napari_fcnseg.core.normalize.fit_normalizer` with the case's modality), so both methods
see the same intensities and the generated MR next case (another intensity scale) is fair to
both. Training pixels: every class is thinned uniformly by the same fraction so that at most
``--forest-pixels`` (default 200 000) remain, but no class keeps fewer than
min(its count, 5000) pixels (a small tumour is not thinned away); seeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_fcnseg.core.device import configure_threads
from napari_fcnseg.core.finetune import FinetuneSettings, finetune, finetune_iter
from napari_fcnseg.core.metrics import dice_per_class, voxel_counts
from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.objects import keep_anchored_objects
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.store import ModelStore

CACHE_ENV = "NAPARI_FCNSEG_BENCH_CACHE"
DEFAULT_CACHE = Path("~/.cache/napari-fcnseg-bench")
TPTBOX = "tptbox==1.1.0"
PYRADIOMICS = "pyradiomics==3.0.1"
TPTBOX_FILES = {  # member of the wheel -> file name in the cache
    f"TPTBox/tests/{d}/{f}.nii.gz": f"{f}.nii.gz"
    for d, files in (
        ("sample_ct", ("sub-ct_label-22_ct", "sub-ct_seg-subreg_label-22_msk",
                       "sub-ct_seg-vert_label-22_msk")),
        ("sample_mri", ("sub-mri_label-6_T2w", "sub-mri_seg-subreg_label-6_msk",
                        "sub-mri_seg-vert_label-6_msk")))
    for f in files}
RADIOMICS_CASES = ("lung1", "brain2", "breast1")
RADIOMICS_FILES = {f"pyradiomics-3.0.1/data/{c}_{k}.nrrd": f"{c}_{k}.nrrd"
                   for c in RADIOMICS_CASES for k in ("image", "label")}
TARGET_AXES = ("S", "P", "L")  # (Z, Y, X): index grows superior, posterior, to the left

SPINE_CLASSES = {  # class name -> TPTBox subregion (Location) codes
    "spine-ct": {"vertebral body": (49, 50), "posterior elements": tuple(range(41, 49))},
    "spine-mr": {"vertebral body": (49, 50, 62), "posterior elements": tuple(range(41, 49)),
                 "intervertebral disc": (100,), "spinal canal": (60, 61)},
}
SPINE_FILES = {"spine-ct": ("sub-ct_label-22_ct", "sub-ct_seg-subreg_label-22_msk"),
               "spine-mr": ("sub-mri_label-6_T2w", "sub-mri_seg-subreg_label-6_msk")}
TOTALSEG = "totalsegmentator==2.18.0"
TOTALSEG_FILES = {f"totalsegmentator-2.18.0/tests/reference_files/{f}.nii.gz": f"{f}.nii.gz"
                  for f in ("example_ct_sm", "example_seg")}
ABDOMEN_CLASSES = {  # class name -> TotalSegmentator "total" task label values
    "liver": (5,), "spleen": (1,), "kidney": (2, 3), "stomach": (6,), "aorta": (52,),
    "vertebra": (30, 31, 32, 33)}
GENERATED = {"generated-ct": ("CT", 300_000, 300_002), "generated-mr": ("MR", 300_001, 300_003)}
#: The generated CT with its classes renamed, so the round learns them as new classes: the only
#: case where a class learned from scratch is scored on another case (cross-case generalisation).
RENAMED = {"generated-ct-new": ("generated-ct", ["background", "liver", "tumour"])}
MODALITY = {"spine-ct": "ct", "spine-mr": "mr", "lung1": "ct", "brain2": "mr", "breast1": "mr",
            "abdomen-ct": "ct", "generated-ct": "ct", "generated-mr": "mr"}
ALL_CASES = ("generated-ct", "generated-mr", "generated-ct-new", "spine-ct", "spine-mr",
             "abdomen-ct", "lung1", "brain2", "breast1")
QUICK_CASES = ("generated-mr", "spine-mr", "breast1")


# ---------------------------------------------------------------------------- data

def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest),
           spec]
    if sdist:  # preparing the sdist's metadata needs numpy and setuptools here
        cmd[4:4] = ["--no-binary", ":all:", "--no-build-isolation"]
    subprocess.run(cmd, check=True)
    (archive,) = [p for p in dest.iterdir() if p.is_file()]
    return archive


def _fetch(cache: Path, spec: str, members: dict[str, str], sdist: bool) -> Path:
    """Download ``spec`` with pip once, keep only ``members`` (flat, renamed) in the cache."""
    folder = cache / spec.replace("==", "-")
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching {spec} into {folder} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = _pip_download(spec, Path(tmp), sdist)
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member, name in members.items():
                    (folder / name).write_bytes(zf.read(member))
        else:
            with tarfile.open(archive) as tf:
                for member, name in members.items():
                    fh = tf.extractfile(member)
                    if fh is None:
                        raise RuntimeError(f"{member} is not a file in {archive.name}")
                    (folder / name).write_bytes(fh.read())
    (folder / ".complete").write_text(spec + "\n")
    return folder


def _reorient(array: np.ndarray, affine: np.ndarray, zooms) -> tuple[np.ndarray, tuple]:
    """Return the array with axes (Z, Y, X) = TARGET_AXES, and its spacing in that order."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    ornt = ornt_transform(io_orientation(affine), axcodes2ornt(TARGET_AXES))
    out = np.ascontiguousarray(apply_orientation(array, ornt))
    spacing = [0.0, 0.0, 0.0]
    for src, (dst, _flip) in enumerate(ornt):
        spacing[int(dst)] = float(zooms[src])
    return out, tuple(spacing)


def _read_nifti(path: Path):
    import nibabel as nib

    img = nib.load(path)
    return _reorient(np.asanyarray(img.dataobj), img.affine, img.header.get_zooms()[:3])


def _read_nrrd(path: Path):
    import nrrd

    data, header = nrrd.read(str(path))  # index order (i, j, k) = NRRD's fastest axis first
    if header.get("space") != "left-posterior-superior":
        raise RuntimeError(f"{path.name}: unexpected NRRD space {header.get('space')!r}")
    directions = np.asarray(header["space directions"], float)  # row a: step of axis a (LPS)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ directions.T  # LPS -> RAS, columns = axes
    return _reorient(data, affine, np.linalg.norm(directions, axis=1))


# ---------------------------------------------------------------------------- cases

@dataclass
class Case:
    name: str
    image: np.ndarray  # (Z, Y, X)
    labels: np.ndarray  # (Z, Y, X) uint8, 0 = background
    class_names: list[str]
    scored: list[int]  # classes scored (indices into class_names)
    modality: str
    spacing: tuple
    annotated: list[int]
    start_classes: bool  # the bundled model's classes mean the same as scored ones
    next_case: tuple[np.ndarray, np.ndarray] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)


def spread(candidates: list[int], k: int) -> list[int]:
    """Middle element of each of ``k`` equal parts of ``candidates``."""
    n = len(candidates)
    return sorted({candidates[(2 * i + 1) * n // (2 * k)] for i in range(min(k, n))})


def foreground_slices(labels: np.ndarray) -> list[int]:
    return [int(z) for z in np.flatnonzero(labels.reshape(len(labels), -1).any(1))]


def tumour_slices(labels: np.ndarray) -> list[int]:
    """Two tumour slices and the middle of the longer run of tumour-free slices."""
    fg = foreground_slices(labels)
    below = list(range(0, fg[0]))
    above = list(range(fg[-1] + 1, len(labels)))
    empty = below if len(below) > len(above) else above
    chosen = spread(fg, 2)
    if empty:
        chosen.append(empty[len(empty) // 2])
    return sorted(chosen)


def cache_dir(given: Path | None = None) -> Path:
    """The data cache: ``given``, else ``$NAPARI_FCNSEG_BENCH_CACHE``, else the default."""
    return (given or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)).expanduser()


def annotated_only(labels: np.ndarray, annotated: list[int]) -> np.ndarray:
    """``labels`` on the ``annotated`` slices, 0 everywhere else (what a round is given)."""
    sparse = np.zeros_like(labels)
    sparse[annotated] = labels[annotated]
    return sparse


def load_case(name: str, cache: Path) -> Case:
    if name in RENAMED:
        original, names = RENAMED[name]
        case = load_case(original, cache)
        return dataclasses.replace(case, name=name, class_names=list(names), start_classes=False,
                                   source=f"{case.source}; classes renamed {names[1:]}")
    if name in GENERATED:
        modality, seed, next_seed = GENERATED[name]
        shape = (32, 256, 256)
        ph, nx = generate_volume(modality, shape, seed), generate_volume(modality, shape, next_seed)
        return Case(name, ph.image, ph.labels, list(CLASS_NAMES), [1, 2], MODALITY[name],
                    ph.spacing, spread(foreground_slices(ph.labels), 3), True,
                    (nx.image, nx.labels), f"generate_volume({modality!r}, {shape}, {seed}); "
                    f"next case seed {next_seed}")
    if name in SPINE_FILES:
        folder = _fetch(cache, TPTBOX, TPTBOX_FILES, sdist=False)
        image_file, mask_file = SPINE_FILES[name]
        image, spacing = _read_nifti(folder / f"{image_file}.nii.gz")
        mask, _ = _read_nifti(folder / f"{mask_file}.nii.gz")
        labels = np.zeros(mask.shape, np.uint8)
        classes = SPINE_CLASSES[name]
        for value, codes in enumerate(classes.values(), start=1):
            labels[np.isin(mask, codes)] = value
        unmapped = sorted(set(np.unique(mask[labels == 0]).tolist()) - {0})
        notes = [f"unmapped subregion codes left as background: {unmapped}"] if unmapped else []
        return Case(name, image, labels, ["background", *classes], list(range(1, len(classes) + 1)),
                    MODALITY[name], spacing, spread(foreground_slices(labels), 5), False,
                    source=f"{TPTBOX} {image_file} + {mask_file}", notes=notes)
    if name == "abdomen-ct":
        folder = _fetch(cache, TOTALSEG, TOTALSEG_FILES, sdist=True)
        image, spacing = _read_nifti(folder / "example_ct_sm.nii.gz")
        mask, _ = _read_nifti(folder / "example_seg.nii.gz")
        labels = np.zeros(mask.shape, np.uint8)
        for value, codes in enumerate(ABDOMEN_CLASSES.values(), start=1):
            labels[np.isin(mask, codes)] = value
        return Case(name, image.astype(np.int16), labels, ["background", *ABDOMEN_CLASSES],
                    list(range(1, len(ABDOMEN_CLASSES) + 1)), MODALITY[name], spacing,
                    spread(foreground_slices(labels), 5), False,
                    source=f"{TOTALSEG} tests/reference_files/example_ct_sm.nii.gz + "
                           "example_seg.nii.gz",
                    notes=["reference = the TotalSegmentator labels shipped with its tests; "
                           "other structures left as background"])
    if name in RADIOMICS_CASES:
        folder = _fetch(cache, PYRADIOMICS, RADIOMICS_FILES, sdist=True)
        image, spacing = _read_nrrd(folder / f"{name}_image.nrrd")
        label, _ = _read_nrrd(folder / f"{name}_label.nrrd")
        labels = np.where(label > 0, 2, 0).astype(np.uint8)  # the bundled model's "lesion"
        return Case(name, image, labels, list(CLASS_NAMES), [2], MODALITY[name], spacing,
                    tumour_slices(labels), True,
                    source=f"{PYRADIOMICS} data/{name}_image.nrrd + {name}_label.nrrd")
    raise SystemExit(f"unknown case {name!r}; choose from {', '.join(ALL_CASES)}")


# ---------------------------------------------------------------------------- methods

def scores(pred: np.ndarray, ref: np.ndarray, case: Case) -> dict[str, float]:
    d = dice_per_class(pred, ref, len(case.class_names))
    return {case.class_names[c]: round(float(d[c]), 4) for c in case.scored}


def voxels(pred: np.ndarray, ref: np.ndarray, case: Case) -> dict[str, list[int]]:
    """Predicted and reference voxels per scored class (reads a Dice of 0 as 'missed' or
    'drowned in false positives')."""
    counts = voxel_counts(pred, ref, len(case.class_names))
    return {case.class_names[c]: [counts[c][2], counts[c][3]] for c in case.scored}


def anchored_scores(pred: np.ndarray, rest: list[int], case: Case) -> dict[str, float]:
    """Dice on the other slices after keeping only objects that touch the annotated slices
    (:func:`napari_fcnseg.core.objects.keep_anchored_objects`, every scored class): the
    opt-in post-processing for single-object tasks, applied to both methods alike."""
    merged = np.array(pred, copy=True)
    merged[case.annotated] = case.labels[case.annotated]
    keep_anchored_objects(merged, case.annotated, case.scored)
    return scores(merged[rest], case.labels[rest], case)


def mean(d: dict[str, float] | None) -> float | None:
    return round(float(np.mean(list(d.values()))), 4) if d else None


def forest_features(volume: np.ndarray, z: int) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    f = multiscale_basic_features(volume[z], intensity=True, edges=True, texture=True,
                                  sigma_min=1, sigma_max=16)
    return f.reshape(-1, f.shape[-1]).astype(np.float32)


def thin(y: np.ndarray, max_pixels: int, floor: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-wise uniform subsample (see the module docstring)."""
    frac = min(1.0, max_pixels / max(1, y.size))
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = min(idx.size, max(int(round(idx.size * frac)), floor))
        keep.append(idx if n == idx.size else rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(keep))


def run_forest(case: Case, rest: list[int], max_pixels: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    t = time.perf_counter()
    norm = fit_normalizer(case.image, case.modality)
    vol = norm(case.image)
    x = np.concatenate([forest_features(vol, z) for z in case.annotated])
    y = np.concatenate([case.labels[z].ravel() for z in case.annotated])
    keep = thin(y, max_pixels, 5000, np.random.default_rng(0))
    rf = RandomForestClassifier(n_estimators=50, n_jobs=-1, random_state=0)
    rf.fit(x[keep], y[keep])
    del x
    train_s = time.perf_counter() - t

    def segment(volume: np.ndarray, zs: list[int]) -> np.ndarray:
        out = np.zeros(volume.shape, np.uint8)
        for z in zs:
            out[z] = rf.predict(forest_features(volume, z)).reshape(volume.shape[1:])
        return out

    t = time.perf_counter()
    pred = segment(vol, rest)
    predict_s = time.perf_counter() - t
    res = {"dice": scores(pred[rest], case.labels[rest], case),
           "dice_anchored": anchored_scores(pred, rest, case),
           "voxels_pred_ref": voxels(pred[rest], case.labels[rest], case), "train_s": train_s,
           "predict_s": predict_s, "train_pixels": int(keep.size),
           "features": int(rf.n_features_in_)}
    if case.next_case is not None:
        image, labels = case.next_case
        nvol = fit_normalizer(image, case.modality)(image)
        res["next_dice"] = scores(segment(nvol, list(range(len(image)))), labels, case)
    return res


def run_network(net, case: Case, rest: list[int], device: str) -> dict:
    t = time.perf_counter()
    pred = predict(net, case.image, slices=rest, modality=case.modality, device=device).labels
    res = {"dice": scores(pred[rest], case.labels[rest], case),
           "predict_s": time.perf_counter() - t,
           "dice_anchored": anchored_scores(pred, rest, case),
           "voxels_pred_ref": voxels(pred[rest], case.labels[rest], case)}
    if case.next_case is not None:
        image, labels = case.next_case
        res["next_dice"] = scores(
            predict(net, image, modality=case.modality, device=device).labels, labels, case)
    return res


def run_case(case: Case, starts: dict, settings: FinetuneSettings, device: str,
             max_pixels: int) -> list[dict]:
    rest = [z for z in range(len(case.image)) if z not in case.annotated]
    rows = []
    for label, start in starts.items():
        rows.extend(_run_start(case, label if len(starts) > 1 else "", start, rest, settings,
                               device))
    rows.append({"method": "forest", **run_forest(case, rest, max_pixels)})
    for r in rows:
        print(f"  {case.name} {r['method']}: train {r['train_s']:.1f} s, predict "
              f"{r['predict_s']:.1f} s, Dice {r['dice']}, voxels predicted/reference "
              f"{r['voxels_pred_ref']}", file=sys.stderr, flush=True)
    for r in rows:
        r["mean_dice"] = mean(r["dice"])
        r["anchored_mean_dice"] = mean(r.get("dice_anchored"))
        r["next_mean_dice"] = mean(r.get("next_dice"))
        r["train_s"], r["predict_s"] = round(r["train_s"], 1), round(r["predict_s"], 1)
    return rows


def _run_start(case: Case, label: str, start, rest: list[int], settings: FinetuneSettings,
               device: str) -> list[dict]:
    """The starting model's rows: unchanged (where its classes apply) and fine-tuned."""
    start_net = start.net
    rows = []
    if case.start_classes:
        rows.append({"method": f"{label or 'bundled'} (start)", "train_s": 0.0,
                     **run_network(start_net, case, rest, device)})
    sparse = annotated_only(case.labels, case.annotated)
    extra = {}
    if "base_class_names" in inspect.signature(finetune_iter).parameters:
        extra["base_class_names"] = start.class_names  # head rows matched by name, not index
    t = time.perf_counter()
    result = finetune(start_net, case.image, sparse, slices=case.annotated,
                      class_names=case.class_names, settings=settings, modality=case.modality,
                      device=device, **extra)
    train_s = time.perf_counter() - t
    row = {"method": f"fine-tuned from {label}" if label else "fine-tuned", "train_s": train_s,
           **run_network(result.net, case, rest, device)}
    row["steps"] = getattr(result, "steps", None)
    if getattr(result, "stopped", None):
        row["stopped"] = result.stopped
    for key in ("dice_before", "dice_after", "dice_train"):  # the round's own report
        if isinstance(getattr(result, key, None), dict):
            row[f"reported_{key}"] = {k: round(float(v), 4) for k, v in
                                      getattr(result, key).items()}
    rows.append(row)
    return rows


# ---------------------------------------------------------------------------- main

def code_version() -> str:
    """The commit measured, and whether the package had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "napari_fcnseg"], cwd=root,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in napari_fcnseg/" if dirty else "")


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help=f"comma-separated subset of {','.join(ALL_CASES)}")
    parser.add_argument("--steps", type=int, help="fine-tune steps (default: FinetuneSettings)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {','.join(QUICK_CASES)}, 10 steps, 20 000 "
                             "forest pixels (unless given)")
    parser.add_argument("--holdout-folds", type=int, default=0,
                        help="folds of the round's own held-out Dice estimate (default 0: "
                             "skipped; the final model is the same, the benchmark scores the "
                             "other slices itself; 3 = the product's default round)")
    parser.add_argument("--forest-pixels", type=int, help="max forest training pixels "
                        "(default 200 000)")
    parser.add_argument("--cache-dir", type=Path, help=f"data cache (default ${CACHE_ENV} or "
                        f"{DEFAULT_CACHE})")
    parser.add_argument("--device", default="cpu", help="torch device for the network")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--start", default="bundled",
                        help="starting model(s), comma-separated: store names or .pt files "
                             "with their card beside (several: compared in the same run)")
    args = parser.parse_args()

    cache = cache_dir(args.cache_dir)
    names = (args.cases.split(",") if args.cases else
             list(QUICK_CASES if args.quick else ALL_CASES))
    steps = args.steps or (10 if args.quick else None)
    known = {f.name for f in dataclasses.fields(FinetuneSettings)}
    overrides = {"steps": steps} if steps else {}
    if "holdout_folds" in known:
        overrides["holdout_folds"] = args.holdout_folds
    settings = FinetuneSettings(**overrides)
    max_pixels = args.forest_pixels or (20_000 if args.quick else 200_000)
    threads = configure_threads()
    code = code_version()  # before the run: the package may change while it runs
    store = ModelStore()
    starts = {}
    for spec in args.start.split(","):
        path = Path(spec).expanduser()
        starts[path.parent.name if path.suffix == ".pt" else spec] = store.load(
            path if path.suffix == ".pt" else spec)

    results = []
    for name in names:
        t0 = time.perf_counter()
        case = load_case(name.strip(), cache)
        rows = run_case(case, starts, settings, args.device, max_pixels)
        info = {"case": case.name, "source": case.source, "shape": list(case.image.shape),
                "spacing_mm": [round(s, 3) for s in case.spacing], "modality": case.modality,
                "classes": case.class_names, "scored": [case.class_names[c] for c in case.scored],
                "annotated": case.annotated,
                "eval_slices": len(case.image) - len(case.annotated),
                "seconds": round(time.perf_counter() - t0, 1), "notes": case.notes, "rows": rows}
        results.append(info)
        print(f"{case.name}: {info['seconds']:.0f} s, annotated {case.annotated}, "
              + ", ".join(f"{r['method']} {_fmt(r['mean_dice'])}" for r in rows),
              file=sys.stderr, flush=True)

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{threads} torch threads, torch {torch.__version__}, Python "
          f"{platform.python_version()}; code {code}; fine-tune settings "
          f"{settings.to_dict()}; forest pixels <= {max_pixels}")
    print("\n| case | method | annotated slices | Dice per class (other slices) | mean Dice "
          "| mean Dice, only objects touching the annotated slices | next case mean Dice "
          "| train s | predict s |\n|---|---|---|---|---|---|---|---|---|")
    for info in results:
        for r in info["rows"]:
            per_class = ", ".join(f"{k} {v:.3f}" for k, v in r["dice"].items())
            print(f"| {info['case']} | {r['method']} | {len(info['annotated'])} of "
                  f"{info['shape'][0]} | {per_class} | {_fmt(r['mean_dice'])} | "
                  f"{_fmt(r['anchored_mean_dice'])} | {_fmt(r['next_mean_dice'])} | "
                  f"{r['train_s']:.1f} | {r['predict_s']:.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"code": code, "settings": settings.to_dict(),
                                         "forest_pixels": max_pixels, "cases": results},
                                        indent=1))


if __name__ == "__main__":
    main()
