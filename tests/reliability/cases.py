"""The bad-input matrix: every case a user or a hostile file can throw at the command line.

Each case builds its files in a temporary folder and returns the command to run. The test
(``test_bad_input.py``) runs it and checks what every case promises: the expected exit code,
exactly one plain ``napari-fcnseg: error:`` line (when it fails) naming the problem, no
traceback, the inputs byte for byte unchanged, the model store unchanged where it should be,
and no file left behind but the expected outputs. ``docs/reliability.md`` is generated from
this table (``python -m tests.reliability.cases``).
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from napari_fcnseg.core.phantoms import generate_volume


@dataclass
class Case:
    """One row of the matrix."""

    id: str
    category: str
    what: str
    build: Callable[[Path], list[str]]
    code: int = 2  # expected exit code (0 = must succeed)
    words: str = ""  # the error line must contain these (case-insensitive)
    outputs: tuple[str, ...] = ()  # files (relative to the folder) that must exist afterwards
    store_changes: bool = False
    posix_root: bool = False  # needs a POSIX machine and root (device nodes)
    tags: list[str] = field(default_factory=list)


def _scan(d: Path, name: str = "ct.tif", shape=(5, 32, 32), seed: int = 1) -> Path:
    ph = generate_volume("CT", shape, seed)
    tifffile.imwrite(d / name, ph.image, photometric="minisblack")
    return d / name


def _labels(d: Path, values=None, name: str = "lab.tif", dtype=np.uint8) -> Path:
    ph = generate_volume("CT", (5, 32, 32), 1)
    lab = ph.labels.astype(dtype) if values is None else values
    tifffile.imwrite(d / name, lab, photometric="minisblack")
    return d / name


def _write(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _pickle_model(d: Path) -> Path:
    return _write(d, "evil.pt", pickle.dumps({"format": "napari-fcnseg", "x": _Payload()}))


def _export(d: Path) -> Path:
    from napari_fcnseg.core.store import ModelStore

    return ModelStore().export("tiny", d / "t.pt")


def _truncated_export(d: Path) -> Path:
    path = _export(d)
    data = path.read_bytes()
    return _write(d, "cut.pt", data[: len(data) // 3])


def _predict(src, out, *extra):
    return ["predict", str(src), str(out), "--model", "tiny", *map(str, extra)]


def _finetune(d, image, labels, *extra, name="new"):
    return ["finetune", "--image", str(image), "--labels", str(labels), "--base", "tiny",
            "--name", name, "--steps", "2", "--no-heldout", *map(str, extra)]


def _nifti(d: Path, name: str, shape, dtype=np.int16, dims=None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros(shape, dtype), np.eye(4))
    buf = bytearray(img.to_bytes())
    if dims is not None:  # patch dim[] in the header: an absurd size
        import struct
        struct.pack_into("<8h", buf, 40, *dims)
    return _write(d, name, gzip.compress(bytes(buf)))


def _dicom_sr(d: Path) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = d / "sr"
    folder.mkdir()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "SR"
    ds.save_as(folder / "report.dcm", enforce_file_format=True)
    return folder


def _batch(d: Path, bad: bytes | None = b"not a tiff") -> Path:
    folder = d / "cases"
    folder.mkdir()
    _scan(folder, "a.tif")
    if bad is not None:
        _write(folder, "b.tif", bad)
    return folder


def _truncated_tiff(d: Path) -> Path:
    path = _scan(d, "full.tif")
    data = path.read_bytes()
    path.unlink()
    return _write(d, "cut.tif", data[: len(data) // 2])


CASES: list[Case] = [
    # ---------------------------------------------------------------- unreadable input
    Case("missing-input", "input", "input path does not exist",
         lambda d: _predict(d / "nope.tif", d / "o.tif"), words="no such file"),
    Case("garbage-tif", "input", "a .tif holding text", lambda d: _predict(
        _write(d, "x.tif", b"hello, not an image"), d / "o.tif"), words="x.tif"),
    Case("truncated-tif", "input", "a TIFF cut in half",
         lambda d: _predict(_truncated_tiff(d), d / "o.tif"), words="truncated"),
    Case("empty-nifti", "input", "a zero-byte .nii.gz",
         lambda d: _predict(_write(d, "e.nii.gz", b""), d / "o.nii.gz"), words="e.nii.gz"),
    Case("corrupt-gzip", "input", ".nii.gz that is not gzip",
         lambda d: _predict(_write(d, "c.nii.gz", b"\x1f\x8b garbage" * 10), d / "o.nii.gz"),
         words="c.nii.gz"),
    Case("absurd-header", "input", "NIfTI header claiming 30000^3 voxels",
         lambda d: _predict(_nifti(d, "big.nii.gz", (4, 4, 4),
                                   dims=(3, 30000, 30000, 30000, 1, 1, 1, 1)), d / "o.nii.gz"),
         words="big.nii.gz"),
    Case("5d-tif", "input", "a 5D TIFF", lambda d: (
        tifffile.imwrite(d / "v.tif", np.zeros((2, 2, 3, 8, 8), np.int16),
                         photometric="minisblack"), _predict(d / "v.tif", d / "o.tif"))[1]),
    Case("complex-tif", "input", "complex pixels", lambda d: (
        tifffile.imwrite(d / "z.tif", np.zeros((4, 8, 8), np.complex64)),
        _predict(d / "z.tif", d / "o.tif"))[1]),
    Case("rgb-tif", "input", "an RGB photo", lambda d: (
        tifffile.imwrite(d / "p.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb"),
        _predict(d / "p.tif", d / "o.tif"))[1], words="colour"),
    Case("all-nan", "input", "a float volume that is all NaN", lambda d: (
        tifffile.imwrite(d / "n.tif", np.full((4, 16, 16), np.nan, np.float32),
                         photometric="minisblack"), _predict(d / "n.tif", d / "o.tif"))[1],
         words="finite"),
    Case("empty-folder", "input", "an empty folder",
         lambda d: (os.mkdir(d / "empty"), _predict(d / "empty", d / "out"))[1],
         words="no tiff"),
    Case("sr-only-dicom", "input", "a DICOM folder with a report and no image",
         lambda d: _predict(_dicom_sr(d), d / "o.nii.gz")),
    Case("text-folder", "input", "a folder of text files", lambda d: (
        os.mkdir(d / "txt"), _write(d / "txt", "a.txt", b"x"),
        _predict(d / "txt", d / "out"))[2], words="no tiff"),
    # ------------------------------------------------------------------ valid odd input
    Case("partial-nan", "valid", "a few NaN voxels: segmented, they count as the lowest value",
         lambda d: (tifffile.imwrite(d / "pn.tif", np.where(
             np.random.default_rng(0).random((4, 32, 32)) < 0.01, np.nan, 1.0).astype(
             np.float32), photometric="minisblack"), _predict(d / "pn.tif", d / "o.tif"))[1],
         code=0, outputs=("o.tif",)),
    Case("constant-1e20", "valid", "a constant float volume of 1e20", lambda d: (
        tifffile.imwrite(d / "k.tif", np.full((4, 16, 16), 1e20, np.float32),
                         photometric="minisblack"), _predict(d / "k.tif", d / "o.tif"))[1],
         code=0, outputs=("o.tif",)),
    Case("uint64-top", "valid", "uint64 values near 2**64", lambda d: (
        tifffile.imwrite(d / "u.tif", np.full((4, 16, 16), 2**64 - 5, np.uint64),
                         photometric="minisblack"), _predict(d / "u.tif", d / "o.tif"))[1],
         code=0, outputs=("o.tif",)),
    Case("three-slices", "valid", "a 3-slice int16 stack tifffile tags RGB", lambda d: (
        tifffile.imwrite(d / "t3.tif", np.zeros((3, 16, 16), np.int16)),
        _predict(d / "t3.tif", d / "o.tif"))[1], code=0, outputs=("o.tif",)),
    Case("lzw-tif", "valid", "an LZW-compressed TIFF", lambda d: (
        tifffile.imwrite(d / "l.tif", generate_volume("CT", (4, 32, 32), 2).image,
                         compression="lzw", photometric="minisblack"),
        _predict(d / "l.tif", d / "o.tif"))[1], code=0, outputs=("o.tif",)),
    Case("one-bit-tif", "valid", "a 1-bit mask TIFF (segmented as an image)", lambda d: (
        tifffile.imwrite(d / "m.tif", np.zeros((4, 16, 16), bool), photometric="minisblack"),
        _predict(d / "m.tif", d / "o.tif"))[1], code=0, outputs=("o.tif",)),
    Case("2d-image", "valid", "a single 2D slice",
         lambda d: _predict(_scan(d, "s.tif", (1, 32, 32)), d / "o.tif"), code=0,
         outputs=("o.tif",)),
    Case("output-folder", "valid", "output is an existing folder: <name>_labels inside",
         lambda d: (os.mkdir(d / "out"), _predict(_scan(d), d / "out"))[1], code=0,
         outputs=("out/ct_labels.tif",)),
    # ------------------------------------------------------------------ outputs
    Case("out-is-input", "output", "labels written over the input scan",
         lambda d: _predict(_scan(d), d / "ct.tif"), words="input file"),
    Case("out-dotdot", "output", "the input again, spelled with ..",
         lambda d: _predict(_scan(d), d / ".." / d.name / "ct.tif"), words="input file"),
    Case("out-symlink", "output", "a link to the input", lambda d: (
        _scan(d), os.symlink(d / "ct.tif", d / "link.tif"),
        _predict(d / "ct.tif", d / "link.tif"))[2], words="input file"),
    Case("probs-is-input", "output", "--probabilities over the input",
         lambda d: _predict(_scan(d), d / "o.tif", "--probabilities", d / "ct.tif"),
         words="input file"),
    Case("probs-png", "output", "--probabilities with a .png name",
         lambda d: _predict(_scan(d), d / "o.tif", "--probabilities", d / "p.png"),
         words=".tif name"),
    Case("probs-same-as-labels", "output", "--probabilities equal to the labels path",
         lambda d: _predict(_scan(d), d / "o.tif", "--probabilities", d / "o.tif"),
         words="same file"),
    Case("missing-out-folder", "output", "output folder does not exist",
         lambda d: _predict(_scan(d), d / "no" / "o.tif"), words="does not exist"),
    Case("out-bad-suffix", "output", "output with an unknown suffix",
         lambda d: _predict(_scan(d), d / "o.png"), words=".nii"),
    Case("out-dev-null", "output", "--probabilities /dev/null as root",
         lambda d: _predict(_scan(d), d / "o.tif", "--probabilities", "/dev/null"),
         words="not a regular file", posix_root=True),
    Case("out-dev-full", "output", "labels to /dev/full", lambda d: _predict(
        _scan(d), "/dev/full"), words="not a regular file", posix_root=True),
    Case("seg-from-tiff", "output", "DICOM SEG asked for a TIFF source",
         lambda d: _predict(_scan(d), d / "o.dcm"), words="dicom series"),
    Case("seg-format-wrong-name", "output", "--format dicom-seg with a .nii.gz name",
         lambda d: _predict(_scan(d), d / "o.nii.gz", "--format", "dicom-seg"),
         words=".dcm"),
    # ------------------------------------------------------------------ batches
    Case("batch-one-bad", "batch", "one corrupt case among good ones: skipped, named",
         lambda d: _predict(_batch(d), d / "out"), code=1, words="b.tif",
         outputs=("out/a_labels.tif",)),
    Case("batch-into-itself", "batch", "output folder = input folder, user's labels there",
         lambda d: (_labels(_batch(d, None), name="a_labels.tif"),
                    _predict(d / "cases", d / "cases"))[1], code=1, words="input file"),
    Case("batch-fifo", "batch", "a pipe named x.tif in the folder is not read",
         lambda d: (os.mkfifo(_batch(d, None) / "x.tif"), _predict(d / "cases", d / "out"))[1],
         code=0, outputs=("out/a_labels.tif",)),
    Case("batch-probabilities", "batch", "--probabilities with a folder",
         lambda d: _predict(_batch(d, None), d / "out", "--probabilities", d / "p.tif"),
         words="single input"),
    # ------------------------------------------------------------------ models
    Case("unknown-model", "model", "--model that does not exist",
         lambda d: ["predict", str(_scan(d)), str(d / "o.tif"), "--model", "nope"],
         words="nope"),
    Case("empty-model", "model", "--model ''",
         lambda d: ["predict", str(_scan(d)), str(d / "o.tif"), "--model", ""],
         words="--model is empty"),
    Case("garbage-model-file", "model", "--model pointing at a text file", lambda d: [
        "predict", str(_scan(d)), str(d / "o.tif"), "--model",
        str(_write(d, "m.pt", b"not a model"))]),
    Case("pickle-model-file", "model", "--model a malicious pickle: refused, never run",
         lambda d: ["predict", str(_scan(d)), str(d / "o.tif"), "--model",
                    str(_pickle_model(d))]),
    Case("truncated-model", "model", "--model a truncated export", lambda d: [
        "predict", str(_scan(d)), str(d / "o.tif"), "--model", str(_truncated_export(d))],
         outputs=()),
    Case("import-garbage", "model", "models import of a text file",
         lambda d: ["models", "import", str(_write(d, "g.pt", b"nope"))]),
    Case("import-pickle", "model", "models import of a malicious pickle",
         lambda d: ["models", "import", str(_pickle_model(d))]),
    Case("delete-bundled", "model", "delete the bundled model",
         lambda d: ["models", "delete", "bundled"], words="bundled"),
    Case("delete-missing", "model", "delete a model that does not exist",
         lambda d: ["models", "delete", "ghost"], words="ghost"),
    Case("export-missing", "model", "export a model that does not exist",
         lambda d: ["models", "export", "ghost", str(d / "g.pt")], words="ghost"),
    Case("export-dev-null", "model", "export to /dev/null as root",
         lambda d: ["models", "export", "tiny", "/dev/null"], words="not a regular file",
         posix_root=True),
    Case("export-into-package", "model", "export over the shipped weights", lambda d: [
        "models", "export", "bundled",
        str(Path(__import__("napari_fcnseg").__file__).parent / "core/weights/bundled.pt")],
         words="installation"),
    Case("import-as-reserved", "model", "import under the reserved name 'bundled'",
         lambda d: ["models", "import", str(_export(d)), "--as", "bundled"], words="bundled"),
    Case("import-as-path-trick", "model", "import --as ../../evil: saved as 'evil' inside "
         "the store, nothing outside it", lambda d: ["models", "import", str(_export(d)),
                                                    "--as", "../../evil"],
         code=0, store_changes=True),
    Case("export-usage", "model", "models export without a destination",
         lambda d: ["models", "export", "tiny"], words="usage"),
    # ------------------------------------------------------------------ fine-tuning
    Case("ft-shape-mismatch", "finetune", "labels of another shape", lambda d: _finetune(
        d, _scan(d), _labels(d, np.zeros((5, 16, 16), np.uint8))), words="shape"),
    Case("ft-float-labels", "finetune", "float labels", lambda d: _finetune(
        d, _scan(d), _labels(d, np.zeros((5, 32, 32), np.float32))), words="integers"),
    Case("ft-negative", "finetune", "negative labels", lambda d: _finetune(
        d, _scan(d), _labels(d, np.full((5, 32, 32), -1, np.int16))), words="negative"),
    Case("ft-no-annotation", "finetune", "labels all zero", lambda d: _finetune(
        d, _scan(d), _labels(d, np.zeros((5, 32, 32), np.uint8))), words="no annotated"),
    Case("ft-slices-out-of-range", "finetune", "--slices 99", lambda d: _finetune(
        d, _scan(d), _labels(d), "--slices", "99"), words="outside"),
    Case("ft-slices-garbage", "finetune", "--slices 1,x", lambda d: _finetune(
        d, _scan(d), _labels(d), "--slices", "1,x"), words="--slices"),
    Case("ft-steps-zero", "finetune", "--steps 0", lambda d: [
        *_finetune(d, _scan(d), _labels(d))[:-3], "--steps", "0"], words="--steps"),
    Case("ft-steps-negative", "finetune", "--steps -3", lambda d: [
        *_finetune(d, _scan(d), _labels(d))[:-3], "--steps", "-3"], words="--steps"),
    Case("ft-name-taken", "finetune", "--name of an existing model", lambda d: _finetune(
        d, _scan(d), _labels(d), name="tiny"), words="already exists"),
    Case("ft-label-300", "finetune", "label value 300", lambda d: _finetune(
        d, _scan(d), _labels(d, np.where(generate_volume("CT", (5, 32, 32), 1).labels > 0,
                                         300, 0).astype(np.uint16))), words="255"),
    Case("ft-label-65535", "finetune", "label value 65535 (no 32 GiB allocation)",
         lambda d: _finetune(d, _scan(d), _labels(d, np.where(
             generate_volume("CT", (5, 32, 32), 1).labels > 0, 65535, 0).astype(np.uint16))),
         words="255"),
    Case("ft-bool-labels", "finetune", "bool labels fine-tune as class 1", lambda d: _finetune(
        d, _scan(d), _labels(d, generate_volume("CT", (5, 32, 32), 1).labels > 0)), code=0,
         store_changes=True),
    Case("ft-bad-classes", "finetune", "--classes with one name", lambda d: _finetune(
        d, _scan(d), _labels(d), "--classes", "background"), words="--classes"),
    # ------------------------------------------------------------------ evaluate
    Case("eval-shape", "evaluate", "prediction and reference of other shapes", lambda d: [
        "evaluate", str(_labels(d)), str(_labels(d, np.zeros((5, 16, 16), np.uint8), "r.tif"))],
         words="shape"),
    Case("eval-float", "evaluate", "a float prediction", lambda d: [
        "evaluate", str(_labels(d, np.zeros((5, 32, 32), np.float32))),
        str(_labels(d, name="r.tif"))], words="integers"),
    Case("eval-40000", "evaluate", "uint16 labels using value 40000", lambda d: [
        "evaluate", str(_labels(d, np.full((5, 32, 32), 40000, np.uint16))),
        str(_labels(d, np.full((5, 32, 32), 40000, np.uint16), "r.tif"))], code=0),
    Case("eval-missing", "evaluate", "reference does not exist",
         lambda d: ["evaluate", str(_labels(d)), str(d / "none.tif")], words="no such file"),
]


def matrix_markdown() -> str:
    """docs/reliability.md: the matrix as tables, the command line's and the widgets'."""
    from .widget_cases import widget_markdown  # no Qt: the table only

    lines = ["# Reliability: the bad-input matrix", "", "## Command line", "",
             "Generated from `tests/reliability/cases.py` (`python -m tests.reliability.cases`)"
             "; `tests/reliability/test_bad_input.py` runs every row on every test run and "
             "checks the exit code, exactly one plain error line naming the problem, no "
             "traceback, inputs byte for byte unchanged, the model store unchanged where it "
             "should be, and no file left behind but the expected outputs, so every row is "
             "also what this version does (the tests fail otherwise). Rows marked "
             "*root* need a POSIX machine run as root (device nodes) and are skipped "
             "elsewhere.", "",
             "| case | category | input | expected |", "|---|---|---|---|"]
    for c in CASES:
        if c.code == 0:
            expected = "succeeds" + (f", writes {', '.join(c.outputs)}" if c.outputs else "")
        elif c.code == 1:
            expected = "exit 1, bad case skipped and named" + (
                f" (`{c.words}`)" if c.words else "")
        else:
            expected = "one error line" + (f" mentioning `{c.words}`" if c.words else "")
        if c.posix_root:
            expected += " (*root*)"
        lines.append(f"| `{c.id}` | {c.category} | {c.what} | {expected} |")
    return "\n".join([*lines, *widget_markdown()]) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
    out.write_text(matrix_markdown(), encoding="utf-8")
    print(f"wrote {out}")
