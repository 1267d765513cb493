"""The two built-in models (U-Net "bundled", plain FCN "fcn") and training from scratch."""

import numpy as np
import pytest
import tifffile
import torch

from napari_fcnseg.cli import FROM_SCRATCH_STEPS, main
from napari_fcnseg.core.finetune import FinetuneSettings, finetune
from napari_fcnseg.core.model_names import BUILT_IN, ModelError
from napari_fcnseg.core.nets import PlainFCN, build_network, untrained_network
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.store import ModelStore


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    return ModelStore()


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_built_in_model_loads_and_predicts_any_size(empty_store, name):
    model = empty_store.load(name)
    info = next(i for i in empty_store.list() if i.name == name)
    assert info.bundled and info.available
    assert model.net.config.arch == ("fcn" if name == "fcn" else "unet")
    assert model.class_names == ["background", "organ", "lesion"]
    ph = generate_volume("MR", (3, 37, 53), 7)  # odd sizes: not a multiple of the network's
    result = predict(model.net, ph.image, device="cpu")
    assert result.labels.shape == ph.image.shape and result.labels.dtype == np.uint8


def test_the_shipped_fcn_finds_the_organ_on_a_held_out_mr_volume(empty_store):
    # trained weights, not random ones: a random network scores about 0 here. On CT-like
    # volumes the FCN also marks other soft tissue (see the card's held-out Dice).
    ph = generate_volume("MR", (4, 256, 256), 100_011)  # a seed training never used
    pred = predict(empty_store.load("fcn").net, ph.image, device="cpu").labels
    organ, ref = pred == 1, ph.labels == 1
    assert 2 * (organ & ref).sum() / (organ.sum() + ref.sum()) > 0.6


def test_the_fcn_card_describes_its_training_and_evaluation(empty_store):
    meta = next(i for i in empty_store.list() if i.name == "fcn").metadata
    assert meta["network"]["arch"] == "fcn" and meta["training"]["script"]
    assert set(meta["evaluation"]["pooled_dice"]) == {"organ", "lesion"}


def test_built_in_models_cannot_be_deleted_renamed_or_shadowed(empty_store):
    for name in BUILT_IN:
        with pytest.raises(ModelError, match="cannot be deleted"):
            empty_store.delete(name)
        with pytest.raises(ModelError, match="cannot be renamed"):
            empty_store.rename(name, "other")
        with pytest.raises(ModelError, match="reserved"):
            empty_store.save(build_network({"arch": "fcn"}), name, {"classes": ["a", "b", "c"]})
    empty_store.set_default("fcn")
    assert empty_store.default() == "fcn"
    empty_store.reset()
    assert empty_store.default() == "bundled" and set(BUILT_IN) <= set(empty_store.names())


def test_the_plain_fcn_returns_raw_logits_with_the_input_size():
    net = PlainFCN(3, 4).eval()
    assert isinstance(list(net.children())[-1], torch.nn.Conv2d)  # no activation after it
    with torch.no_grad():
        out = net(torch.rand(2, 3, 36, 20) * 5)
    assert out.shape == (2, 4, 36, 20)
    assert (out < 0).any() and not torch.allclose(out.softmax(1).sum(1), out.sum(1))


def test_fine_tuning_the_fcn_keeps_its_architecture(empty_store):
    ph = generate_volume("MR", (3, 48, 48), 5)
    base = empty_store.load("fcn")
    res = finetune(base.net, ph.image, ph.labels, slices=[0, 2], class_names=base.class_names,
                   base_class_names=base.class_names,
                   settings=FinetuneSettings(steps=3, crop=32, batch_size=2, holdout_folds=0))
    assert res.net.config.arch == "fcn" and res.steps == 3
    before, after = base.net.state_dict(), res.net.state_dict()
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["encoder.0.weight"], after["encoder.0.weight"])


def test_cli_from_scratch_steps_follow_the_core_default():
    assert FROM_SCRATCH_STEPS == FinetuneSettings.from_scratch().steps


@pytest.fixture
def labelled(tmp_path):
    ph = generate_volume("CT", (4, 48, 48), 3)
    img, lab = tmp_path / "ct.tif", tmp_path / "lab.tif"
    tifffile.imwrite(img, ph.image, photometric="minisblack")
    tifffile.imwrite(lab, ph.labels, photometric="minisblack")
    return img, lab


@pytest.mark.parametrize("arch", ["unet", "fcn"])
def test_from_scratch_trains_a_new_network_of_the_chosen_architecture(
        empty_store, labelled, arch, capsys):
    img, lab = labelled
    code, out, err = run(capsys, "finetune", "--image", img, "--labels", lab, "--slices", "0,2",
                         "--from-scratch", "--arch", arch, "--classes", "bg,liver,tumour",
                         "--name", "new", "--steps", "4", "--no-heldout")
    assert code == 0, err
    assert "untrained network" in out and f"trained from an untrained {arch}" in out
    model = ModelStore().load("new")
    meta = model.metadata
    assert meta["parent"] is None and meta["from_scratch"] == arch
    assert meta["network"]["arch"] == arch and meta["classes"] == ["bg", "liver", "tumour"]
    settings = meta["hyperparameters"]
    assert settings["encoder_lr_factor"] == 1.0 and settings["anchor_weight"] == 0
    assert not settings["freeze_norm_stats"] and settings["steps"] == 4
    torch.manual_seed(0)
    fresh = untrained_network(arch, 3)
    assert any(not torch.equal(a, b) for a, b in zip(model.net.state_dict().values(),
                                                     fresh.state_dict().values(), strict=True))


def test_from_scratch_refuses_a_base_and_arch_needs_from_scratch(empty_store, labelled, capsys):
    img, lab = labelled
    common = ["finetune", "--image", img, "--labels", lab, "--name", "x", "--steps", "2"]
    code, _, err = run(capsys, *common, "--from-scratch", "--base", "fcn")
    assert code != 0 and "leave out --base" in err
    code, _, err = run(capsys, *common, "--arch", "fcn")
    assert code != 0 and "--from-scratch" in err and "--base fcn" in err
    assert "x" not in ModelStore().names()


def test_predict_and_finetune_with_the_fcn_from_the_cli(empty_store, labelled, tmp_path, capsys):
    img, lab = labelled
    out = tmp_path / "pred.tif"
    code, _, err = run(capsys, "predict", img, out, "--model", "fcn")
    assert code == 0, err
    assert tifffile.imread(out).shape == (4, 48, 48)
    code, stdout, err = run(capsys, "finetune", "--image", img, "--labels", lab, "--base", "fcn",
                            "--name", "fcn-mine", "--steps", "2", "--no-heldout")
    assert code == 0, err
    assert ModelStore().load("fcn-mine").metadata["parent"] == "fcn"
    code, listing, _ = run(capsys, "models", "list")
    lines = {line[2:].split()[0]: line for line in listing.splitlines()}
    assert "built in" in lines["fcn"] and "from fcn" in lines["fcn-mine"]
