import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_fcnseg.cli import CliError, main
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.store import ModelStore


@pytest.fixture
def case(tmp_path):
    ph = generate_volume("CT", (4, 64, 64), 3)
    img, lab = tmp_path / "ct.tif", tmp_path / "ct_ref.tif"
    tifffile.imwrite(img, ph.image, photometric="minisblack")
    tifffile.imwrite(lab, ph.labels, photometric="minisblack")
    return img, lab, ph


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_writes_uint8_labels_of_the_input_shape(store, case, tmp_path, capsys):
    img, _, ph = case
    out, probs = tmp_path / "pred.tif", tmp_path / "probs.tif"
    code, stdout, _ = run(capsys, "predict", str(img), str(out), "--model", "tiny",
                          "--probabilities", str(probs))
    assert code == 0 and "wrote" in stdout
    labels = tifffile.imread(out)
    assert labels.shape == ph.image.shape and labels.dtype == np.uint8
    p = tifffile.imread(probs)
    assert p.dtype == np.uint8 and p.shape == (4, 3, 64, 64)  # ImageJ order: Z, C, Y, X
    assert np.abs(p.astype(int).sum(axis=1) - 255).max() <= 2


def test_predict_with_the_bundled_model_finds_the_organ(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "empty-store"))
    ph = generate_volume("CT", (6, 256, 256), 100_007)  # a held-out seed, realistic size
    img, ref = tmp_path / "ct.tif", tmp_path / "ref.tif"
    tifffile.imwrite(img, ph.image, photometric="minisblack")
    tifffile.imwrite(ref, ph.labels, photometric="minisblack")
    out = tmp_path / "pred.tif"
    assert run(capsys, "predict", str(img), str(out))[0] == 0
    code, stdout, _ = run(capsys, "evaluate", str(out), str(ref), "--json")
    report = json.loads(stdout)
    organ = next(r for r in report["classes"] if r["class"] == 1)
    assert code == 0 and organ["dice"] > 0.8


def test_predict_int8_agrees_with_float32_on_the_bundled_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "empty-store"))
    ph = generate_volume("MR", (6, 256, 256), 100_008)  # a held-out seed
    img = tmp_path / "mr.tif"
    tifffile.imwrite(img, ph.image, photometric="minisblack")
    assert run(capsys, "predict", str(img), str(tmp_path / "fp32.tif"))[0] == 0
    code, _, err = run(capsys, "predict", str(img), str(tmp_path / "int8.tif"), "--int8")
    assert code == 0 and "calibrating int8" in err
    fp32, int8 = tifffile.imread(tmp_path / "fp32.tif"), tifffile.imread(tmp_path / "int8.tif")
    assert (fp32 == int8).mean() > 0.995 and (int8 == 1).sum() > 0.9 * (fp32 == 1).sum()
    code, _, err = run(capsys, "predict", str(img), str(tmp_path / "x.tif"), "--int8",
                       "--device", "cuda")
    assert code != 0 and "CPU only" in err and not (tmp_path / "x.tif").exists()
    code, _, err = run(capsys, "predict", str(img), str(tmp_path / "y.tif"), "--int8",
                       "--model", "fcn")
    assert code != 0 and "U-Net models only" in err and not (tmp_path / "y.tif").exists()


def test_evaluate_reports_dice_counts_and_volumes(case, tmp_path, capsys):
    _, ref, ph = case
    pred = ph.labels.copy()
    pred[pred == 2] = 1
    pred_path = tmp_path / "pred.tif"
    tifffile.imwrite(pred_path, pred, photometric="minisblack")
    code, stdout, _ = run(capsys, "evaluate", str(pred_path), str(ref), "--json")
    rows = {r["class"]: r for r in json.loads(stdout)["classes"]}
    assert code == 0 and rows[2]["dice"] == 0.0 and rows[2]["voxels_pred"] == 0
    n1 = int((ph.labels == 1).sum())
    assert rows[1]["voxels_ref"] == n1
    assert rows[1]["dice"] == pytest.approx(2 * n1 / (n1 + (pred == 1).sum()), abs=1e-4)
    code, table, _ = run(capsys, "evaluate", str(pred_path), str(ref))
    assert code == 0 and "Dice" in table and "mL" in table


def test_finetune_saves_a_model_with_lineage(store, case, capsys):
    img, lab, _ = case
    code, stdout, _ = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                          "--slices", "1,2", "--base", "tiny", "--name", "mine", "--steps", "3")
    assert code == 0 and "saved model 'mine'" in stdout
    md = ModelStore().load("mine").metadata
    assert md["parent"] == "tiny" and md["slices"] == [1, 2]
    assert md["num_annotated_slices"] == 2 and md["hyperparameters"]["steps"] == 3
    # the card says which precision was used, not "auto"
    assert md["hyperparameters"]["precision"] in ("float32", "bfloat16")


def test_finetune_precision_option_reaches_the_model_card(store, case, capsys):
    img, lab, _ = case
    code, _, _ = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                     "--slices", "1,2", "--base", "tiny", "--name", "exact", "--steps", "2",
                     "--no-heldout", "--precision", "float32")
    assert code == 0
    assert ModelStore().load("exact").metadata["hyperparameters"]["precision"] == "float32"


def test_models_list_export_import_delete(store, tmp_path, capsys):
    code, stdout, _ = run(capsys, "models", "list")
    assert code == 0 and "bundled" in stdout and "tiny" in stdout
    exported = tmp_path / "tiny-export.pt"
    assert run(capsys, "models", "export", "tiny", str(exported))[0] == 0
    assert exported.is_file()
    code, stdout, _ = run(capsys, "models", "import", str(exported), "--as", "copy")
    assert code == 0 and "copy" in ModelStore().names()
    assert run(capsys, "models", "delete", "copy")[0] == 0
    assert "copy" not in ModelStore().names()
    code, _, err = run(capsys, "models", "delete", "bundled")
    assert code != 0 and "bundled" in err


@pytest.mark.parametrize("problem", ["missing", "not-image", "mismatch", "unknown-model",
                                     "bad-slices", "4d"])
def test_bad_input_gives_one_plain_line_and_no_output(problem, store, case, tmp_path, capsys):
    img, lab, _ = case
    out = tmp_path / "out.tif"
    if problem == "missing":
        args = ["predict", str(tmp_path / "nope.tif"), str(out)]
    elif problem == "not-image":
        junk = tmp_path / "junk.tif"
        junk.write_bytes(b"this is not a TIFF file at all")
        args = ["predict", str(junk), str(out), "--model", "tiny"]
    elif problem == "mismatch":
        small = tmp_path / "small.tif"
        tifffile.imwrite(small, np.zeros((4, 32, 32), np.uint8), photometric="minisblack")
        args = ["finetune", "--image", str(img), "--labels", str(small), "--name", "x",
                "--base", "tiny"]
    elif problem == "unknown-model":
        args = ["predict", str(img), str(out), "--model", "no-such-model"]
    elif problem == "bad-slices":
        args = ["finetune", "--image", str(img), "--labels", str(lab), "--slices", "1,x",
                "--name", "y", "--base", "tiny"]
    else:
        five = tmp_path / "five.tif"
        tifffile.imwrite(five, np.zeros((2, 2, 2, 2, 8, 8), np.int16), photometric="minisblack")
        args = ["predict", str(five), str(out), "--model", "tiny"]
    code, _, err = run(capsys, *args)
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-fcnseg: error:"), err
    assert "Traceback" not in err
    assert not out.exists()


def test_debug_flag_shows_the_traceback(store, tmp_path, capsys):
    with pytest.raises(CliError, match="no such file"):
        main(["--debug", "predict", str(tmp_path / "nope.tif"), str(tmp_path / "o.tif")])


def test_batch_folder_skips_bad_cases_and_keeps_going(store, case, tmp_path, capsys):
    img, _, ph = case
    cases = tmp_path / "cases"
    cases.mkdir()
    tifffile.imwrite(cases / "a.tif", ph.image, photometric="minisblack")
    (cases / "b.tif").write_bytes(b"broken")
    tifffile.imwrite(cases / "c.tif", ph.image[:2], photometric="minisblack")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "predict", str(cases), str(out), "--model", "tiny")
    assert code == 1 and "skipped b.tif" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "c_labels.tif"]


def test_console_script_runs_as_a_program():
    res = subprocess.run([sys.executable, "-m", "napari_fcnseg.cli", "--help"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0 and "predict" in res.stdout and "finetune" in res.stdout


def test_batch_of_nifti_and_dicom_writes_labels_on_each_source_grid(store, tmp_path, capsys):
    import nibabel as nib

    from napari_fcnseg.io import read_volume
    from tests.io.conftest import make_nifti, make_series

    cases = tmp_path / "cases"
    cases.mkdir()
    mr = generate_volume("MR", (4, 48, 40), 5)
    angle = np.deg2rad(20)
    affine = np.array([[0.0, -1.2 * np.sin(angle), 0.9 * np.cos(angle), 10.0],
                       [0.0, 1.2 * np.cos(angle), 0.9 * np.sin(angle), -20.0],
                       [-3.0, 0.0, 0.0, 40.0],
                       [0.0, 0.0, 0.0, 1.0]])  # permuted, flipped, oblique, anisotropic
    source = make_nifti(cases / "mr.nii.gz", mr.image, affine)
    ct = generate_volume("CT", (5, 32, 32), 6)
    make_series(cases / "ct", (ct.image.astype(np.int32) + 1024).astype(np.uint16))
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "predict", str(cases), str(out), "--model", "tiny")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["ct_labels.nii.gz", "mr_labels.nii.gz"]
    written, original = nib.load(out / "mr_labels.nii.gz"), nib.load(source)
    np.testing.assert_allclose(written.affine, original.affine)
    assert written.shape == original.shape and written.get_data_dtype() == np.uint8
    ct_volume = read_volume(cases / "ct")
    ct_labels = read_volume(out / "ct_labels.nii.gz")
    assert ct_labels.data.shape == ct_volume.data.shape
    np.testing.assert_allclose(ct_labels.spacing, ct_volume.spacing, rtol=1e-5)


def test_evaluate_reports_volumes_in_ml_from_the_spacing(tmp_path, capsys):
    import nibabel as nib

    ref = np.zeros((4, 10, 10), np.uint8)
    ref[1:3, 2:7, 2:7] = 1  # 50 voxels
    affine = np.diag([2.0, 0.5, 0.5, 1.0])  # 0.5 mm^3 per voxel
    for name in ("pred.nii.gz", "ref.nii.gz"):
        nib.save(nib.Nifti1Image(ref.transpose(2, 1, 0).copy(), affine), tmp_path / name)
    code, stdout, _ = run(capsys, "evaluate", str(tmp_path / "pred.nii.gz"),
                          str(tmp_path / "ref.nii.gz"), "--json")
    row = json.loads(stdout)["classes"][0]
    assert code == 0 and row["dice"] == 1.0 and row["voxels_ref"] == 50
    assert row["ml_ref"] == pytest.approx(50 * 0.5 / 1000)


def test_finetune_reports_held_out_dice_and_takes_names_and_partial_labels(store, case, capsys,
                                                                           tmp_path):
    import tifffile

    img, lab, _ = case
    code, stdout, _ = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                          "--slices", "1,2,3", "--base", "tiny", "--name", "ho", "--steps", "2")
    assert code == 0 and "held-out" in stdout and "3-fold" in stdout
    md = ModelStore().load("ho").metadata
    assert set(md["dice_after"]) == {"organ", "lesion"} and md["improved"] in (True, False)
    assert "held-out" in md["dice_after_measured_on"]
    # scribbles: 255 = not annotated, 0 an explicit background stroke; the user's own names
    labels = tifffile.imread(lab)
    strokes = np.full_like(labels, 255)
    strokes[2, 20:30, 20:30] = labels[2, 20:30, 20:30]
    strokes[2, 0:3, :] = 0
    path = tmp_path / "strokes.tif"
    tifffile.imwrite(path, strokes, photometric="minisblack")
    code, stdout, err = run(capsys, "finetune", "--image", str(img), "--labels", str(path),
                          "--ignore-label", "255", "--classes", "background,liver,tumour",
                          "--base", "tiny", "--name", "scribbled", "--steps", "2")
    assert code == 0, err
    md = ModelStore().load("scribbled").metadata
    assert md["classes"] == ["background", "liver", "tumour"] and md["slices"] == [2]
    assert md["dice_after"] == {} and "no held-out estimate" in stdout


def test_interrupting_the_held_out_check_keeps_the_trained_model(store, case, capsys,
                                                                 monkeypatch):
    from napari_fcnseg.cli import EXIT_INTERRUPTED
    from napari_fcnseg.core import finetune as core_ft

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during the first fold
        yield

    monkeypatch.setattr(core_ft, "kfold_iter", interrupted)
    img, lab, _ = case
    code, stdout, err = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                            "--slices", "1,2,3", "--base", "tiny", "--name", "kept",
                            "--steps", "2")
    assert code == EXIT_INTERRUPTED
    assert "saved model 'kept'" in stdout and "interrupted during the held-out check" in err
    md = ModelStore().load("kept").metadata
    assert md["dice_after"] == {} and "was interrupted" in md["dice_after_measured_on"]
    # interrupted before the model is trained: nothing is written
    monkeypatch.setattr(core_ft, "train_iter", interrupted)
    code, _, err = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                       "--slices", "1,2,3", "--base", "tiny", "--name", "lost", "--steps", "2")
    assert code == EXIT_INTERRUPTED and "nothing was written" in err
    assert "lost" not in ModelStore().names()


def test_finetune_refuses_zero_steps_and_bad_class_lists(store, case, capsys):
    img, lab, _ = case
    base = ["finetune", "--image", str(img), "--labels", str(lab), "--base", "tiny"]
    code, _, err = run(capsys, *base, "--name", "z", "--steps", "0")
    assert code != 0 and "--steps must be at least 1" in err and "z" not in ModelStore().names()
    code, _, err = run(capsys, *base, "--name", "z", "--classes", "background")
    assert code != 0 and "--classes" in err


def test_cli_default_steps_follow_the_core_default():
    from napari_fcnseg import cli
    from napari_fcnseg.core import finetune_config as core

    assert core.FinetuneSettings().steps is None and core.FinetuneSettings().lr is None
    assert (cli.CORRECTION_STEPS, cli.CORRECTION_LR) == (core.CORRECTION_STEPS, core.CORRECTION_LR)
    assert (cli.NEW_CLASS_STEPS, cli.NEW_CLASS_LR) == (core.NEW_CLASS_STEPS, core.NEW_CLASS_LR)


def test_evaluate_names_classes_from_the_sidecar(store, case, tmp_path, capsys):
    from napari_fcnseg.io.sidecar import write_sidecar

    _, lab, _ = case
    write_sidecar(lab, ["background", "liver", "tumour"], None, None)
    code, table, _ = run(capsys, "evaluate", str(lab), str(lab))
    assert code == 0 and "liver" in table and "tumour" in table
    code, stdout, _ = run(capsys, "evaluate", str(lab), str(lab), "--json")
    assert [r["name"] for r in json.loads(stdout)["classes"]][:2] == ["liver", "tumour"]


def test_progress_is_drawn_by_tqdm_with_cases_and_loss(store, case, tmp_path, capsys):
    img, lab, _ = case
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a.tif", "b.tif"):
        (cases / name).write_bytes(img.read_bytes())
    code, stdout, err = run(capsys, "predict", str(cases), str(tmp_path / "out"), "--model",
                            "tiny")
    assert code == 0 and "cases" in err and "2/2" in err and "segmenting a.tif" in err
    assert "wrote" in stdout
    code, _, err = run(capsys, "finetune", "--image", str(img), "--labels", str(lab),
                       "--base", "tiny", "--name", "bar", "--steps", "2", "--no-heldout")
    assert code == 0 and "fine-tuning" in err and "loss=" in err


def test_library_warnings_stay_off_stderr_ours_show_once(store, tmp_path, capsys):
    import numpy as np

    image = np.where(np.random.default_rng(0).random((4, 32, 32)) < 0.01, np.nan,
                     1.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "nan.tif", image, photometric="minisblack")
    code, _, err = run(capsys, "predict", str(tmp_path / "nan.tif"), str(tmp_path / "o.tif"),
                       "--model", "tiny")
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warned) == 1 and "NaN" in warned[0]
