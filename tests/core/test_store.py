import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import napari_fcnseg
from napari_fcnseg.core import model_names
from napari_fcnseg.core import store as store_mod
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.store import (
    BUNDLED,
    FORMAT,
    LoadedModel,
    ModelError,
    ModelInfo,
    ModelStore,
    sanitize_name,
)

CONFIG = NetworkConfig(base=4, depth=2)
CLASSES = ["background", "liver", "tumour"]
UNPICKLED = []


def _mark_unpickled():
    UNPICKLED.append(True)


class Payload:
    """Would run code on unpickling if the loader allowed it."""

    def __reduce__(self):
        return (_mark_unpickled, ())


def make_net(seed=0, config=CONFIG):
    torch.manual_seed(seed)
    net = build_network(config)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they must round-trip too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def outputs(net, seed=1):
    x = torch.randn(2, CONFIG.in_channels, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval()(x)


def meta(**extra):
    return {"classes": list(CLASSES), **extra}


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "env-models"))


@pytest.fixture
def bundled_dir(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(make_net(seed=42).state_dict(), folder / "bundled.pt")
    card = {"network": CONFIG.to_dict(), "classes": CLASSES, "description": "test bundle"}
    (folder / "bundled.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def store(tmp_path, bundled_dir):
    return ModelStore(root=tmp_path / "models", bundled_dir=bundled_dir)


# --- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_outputs(store):
    net = make_net()
    extra = {"parent": BUNDLED, "num_annotated_slices": 3, "slices": [1, 4, 7],
             "hyperparameters": {"lr": 1e-3}, "dice_before": {"liver": 0.5},
             "dice_after": {"liver": np.float32(0.75)}}
    info = store.save(net, "liver-ft", meta(**extra))
    assert isinstance(info, ModelInfo) and info.name == "liver-ft" and not info.bundled

    loaded = store.load("liver-ft")
    assert isinstance(loaded, LoadedModel)
    assert not loaded.net.training
    assert loaded.name == "liver-ft"
    assert loaded.class_names == CLASSES
    assert torch.equal(outputs(loaded.net), outputs(net))
    md = loaded.metadata
    assert md["parent"] == BUNDLED and md["slices"] == [1, 4, 7]
    assert md["hyperparameters"] == {"lr": 1e-3} and md["dice_after"] == {"liver": 0.75}
    assert md["version"] == napari_fcnseg.__version__
    assert md["network"] == CONFIG.to_dict()
    created = datetime.fromisoformat(md["created"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_save_writes_plain_state_dict_and_card(store):
    store.save(make_net(), "m", meta(name="ignored", version="0.0", network={"x": 1}))
    assert files(store.root) == ["m.json", "m.pt"]
    state = torch.load(store.root / "m.pt", weights_only=True)
    assert set(state) == set(make_net().state_dict())
    card = json.loads((store.root / "m.json").read_text())
    assert card["name"] == "m" and card["version"] == napari_fcnseg.__version__
    assert card["network"] == CONFIG.to_dict()


def test_root_is_created_lazily(store):
    assert [i.name for i in store.list()] == [BUNDLED]
    assert store.default() == BUNDLED
    assert not store.root.exists()
    store.save(make_net(), "m", meta())
    assert store.root.is_dir()


def test_env_var_sets_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert ModelStore().root == tmp_path / "elsewhere"
    assert ModelStore(root=tmp_path / "explicit").root == tmp_path / "explicit"


def test_save_sanitizes_the_name(store):
    info = store.save(make_net(), "my model!", meta())
    assert info.name == "my_model"
    assert store.names() == [BUNDLED, "my_model"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({}, "classes"),
        ({"classes": ["background", "liver"]}, "2 classes"),
        ({"classes": "background,liver,tumour"}, "classes"),
        ({"classes": CLASSES, "blob": object()}, "JSON"),
    ],
)
def test_save_rejects_bad_metadata(store, bad, message):
    with pytest.raises(ModelError, match=message):
        store.save(make_net(), "m", bad)
    assert files(store.root) == []


def test_save_needs_a_network_with_config(store):
    with pytest.raises(ModelError, match="config"):
        store.save(torch.nn.Conv2d(3, 3, 1), "m", meta())


def test_save_refuses_to_overwrite_unless_asked(store):
    store.save(make_net(seed=1), "m", meta(note="first"))
    with pytest.raises(ModelError, match="already exists"):
        store.save(make_net(seed=2), "m", meta(note="second"))
    assert store.load("m").metadata["note"] == "first"
    with pytest.raises(ModelError, match="already exists"):
        store.save(make_net(seed=2), "M", meta(), overwrite=True)  # clash ignoring case
    store.save(make_net(seed=2), "m", meta(note="second"), overwrite=True)
    loaded = store.load("m")
    assert loaded.metadata["note"] == "second"
    assert torch.equal(outputs(loaded.net), outputs(make_net(seed=2)))


@pytest.mark.parametrize("name", ["bundled", "Bundled", "default", "nul", "con.backup"])
def test_save_never_uses_reserved_names(store, bundled_dir, name):
    before = (bundled_dir / "bundled.pt").read_bytes()
    with pytest.raises(ModelError, match="reserved"):
        store.save(make_net(seed=3), name, meta(), overwrite=True)
    assert (bundled_dir / "bundled.pt").read_bytes() == before
    assert files(store.root) == []


# --- list ---------------------------------------------------------------------------------------


def test_list_bundled_first_then_by_creation_time(store):
    for name in ["zeta", "alpha", "mid"]:
        store.save(make_net(), name, meta(tag=name))
    infos = store.list()
    assert [i.name for i in infos] == [BUNDLED, "zeta", "alpha", "mid"]
    assert store.names() == [i.name for i in infos]
    assert infos[0].bundled and infos[0].available
    assert infos[0].metadata["description"] == "test bundle"
    assert infos[0].metadata["name"] == BUNDLED
    assert [i.metadata["tag"] for i in infos[1:]] == ["zeta", "alpha", "mid"]
    assert not any(i.bundled for i in infos[1:])


def test_list_skips_corrupt_cards_and_ignores_other_files(store, caplog):
    store.save(make_net(), "good", meta())
    (store.root / "broken.json").write_text("{not json")
    (store.root / "listy.json").write_text("[1, 2]")
    (store.root / "orphan.pt").write_bytes(b"weights without a card")
    (store.root / ".hidden.json").write_text("{}")
    store.set_default("good")
    assert store.names() == [BUNDLED, "good"]
    assert "broken" in caplog.text


def test_load_bundled(store):
    loaded = store.load(BUNDLED)
    assert loaded.name == BUNDLED and loaded.class_names == CLASSES
    assert torch.equal(outputs(loaded.net), outputs(make_net(seed=42)))


def test_missing_bundled_weights_are_listed_but_not_loadable(tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    store = ModelStore(root=tmp_path / "models", bundled_dir=empty)
    [info] = store.list()
    assert info.name == BUNDLED and info.bundled and not info.available
    assert store.default() == BUNDLED
    with pytest.raises(ModelError, match="bundled weights not found"):
        store.load(BUNDLED)


def test_unknown_name_lists_available_models(store):
    store.save(make_net(), "mine", meta())
    with pytest.raises(ModelError, match="no model named 'nope'.*bundled, mine"):
        store.load("nope")


# --- delete / rename ------------------------------------------------------------------------------


def test_delete(store):
    store.save(make_net(), "a", meta())
    store.save(make_net(), "b", meta())
    store.set_default("a")
    store.delete("a")
    assert store.names() == [BUNDLED, "b"]
    assert files(store.root) == ["b.json", "b.pt"]
    assert store.default() == BUNDLED
    store.save(make_net(), "a", meta())  # a new model with the old name is not the default
    assert store.default() == BUNDLED
    with pytest.raises(ModelError, match="no model named"):
        store.delete("ghost")


def test_bundled_cannot_be_deleted_or_renamed(store, bundled_dir):
    with pytest.raises(ModelError, match="cannot be deleted"):
        store.delete(BUNDLED)
    with pytest.raises(ModelError, match="cannot be renamed"):
        store.rename(BUNDLED, "mine")
    assert files(bundled_dir) == ["bundled.json", "bundled.pt"]
    assert BUNDLED in store.names()


def test_rename(store):
    net = make_net(seed=5)
    store.save(net, "old", meta(note="kept"))
    store.save(make_net(), "other", meta())
    store.set_default("old")
    info = store.rename("old", "new name")
    assert info.name == "new_name"
    assert store.names() == [BUNDLED, "new_name", "other"]  # creation order kept
    assert files(store.root) == ["default.json", "new_name.json", "new_name.pt",
                                 "other.json", "other.pt"]
    loaded = store.load("new_name")
    assert loaded.name == "new_name" and loaded.metadata["note"] == "kept"
    assert torch.equal(outputs(loaded.net), outputs(net))
    assert store.default() == "new_name"
    with pytest.raises(ModelError, match="already exists"):
        store.rename("new_name", "other")
    with pytest.raises(ModelError, match="reserved"):
        store.rename("new_name", "bundled")
    with pytest.raises(ModelError, match="no model named"):
        store.rename("ghost", "x")
    assert store.names() == [BUNDLED, "new_name", "other"]


def test_rename_changing_only_case(store):
    store.save(make_net(), "liver", meta())
    assert store.rename("liver", "Liver").name == "Liver"
    assert store.names() == [BUNDLED, "Liver"]
    assert files(store.root) == ["Liver.json", "Liver.pt"]


# --- export / import -----------------------------------------------------------------------------


def test_export_is_one_weights_only_file(store, tmp_path):
    net = make_net(seed=7)
    store.save(net, "shared", meta(parent=BUNDLED))
    out = tmp_path / "out"
    out.mkdir()
    path = store.export("shared", out)
    assert path == out / "shared.pt" and files(out) == ["shared.pt"]
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert data["format"] == FORMAT and data["format_version"] == 1
    assert data["metadata"]["classes"] == CLASSES and data["metadata"]["parent"] == BUNDLED
    json.dumps(data["metadata"])  # JSON-compatible
    assert set(data["state_dict"]) == set(net.state_dict())
    assert torch.equal(outputs(store.load(path).net), outputs(net))
    assert torch.equal(outputs(store.load(str(path)).net), outputs(net))
    named = store.export("shared", tmp_path / "custom.pt")
    assert named == tmp_path / "custom.pt" and named.is_file()
    with pytest.raises(ModelError, match="model folder"):
        store.export("shared", store.root / "copy.pt")


def test_import_round_trip(store, tmp_path):
    net = make_net(seed=8)
    store.save(net, "liver", meta(dice_after={"liver": 0.9}))
    path = store.export("liver", tmp_path / "liver.pt")
    info = store.import_model(path)
    assert info.name == "liver-2"  # "liver" is taken
    loaded = store.load("liver-2")
    assert torch.equal(outputs(loaded.net), outputs(net))
    assert loaded.metadata["dice_after"] == {"liver": 0.9}
    assert loaded.metadata["imported"]["file"] == "liver.pt"
    assert loaded.metadata["imported"]["name"] == "liver"
    assert store.import_model(path, name="colleague").name == "colleague"
    assert store.import_model(path).name == "liver-3"
    with pytest.raises(ModelError, match="already exists"):
        store.import_model(path, name="colleague")
    assert store.names() == [BUNDLED, "liver", "liver-2", "colleague", "liver-3"]


def test_exported_bundled_imports_under_a_free_name(store, tmp_path):
    path = store.export(BUNDLED, tmp_path)
    assert path.name == "bundled.pt"
    assert store.import_model(path).name == "bundled-2"
    with pytest.raises(ModelError, match="reserved"):
        store.import_model(path, name="bundled")
    assert torch.equal(outputs(store.load("bundled-2").net), outputs(make_net(seed=42)))


def test_import_of_non_model_files(store, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes")
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"network": CONFIG.to_dict(), "classes": CLASSES}))
    bare = tmp_path / "weights.pt"
    torch.save(make_net().state_dict(), bare)  # weights but no model card
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    for path in (text, card, bare, tensor):
        with pytest.raises(ModelError, match=path.name):
            store.import_model(path)
    with pytest.raises(ModelError, match="not a napari-fcnseg model"):
        store.import_model(bare)
    with pytest.raises(ModelError, match="cannot read"):
        store.import_model(tmp_path / "missing.pt")
    assert store.names() == [BUNDLED]
    assert files(store.root) == []


def test_load_store_file_by_path_uses_its_card(store):
    net = make_net(seed=9)
    store.save(net, "m", meta())
    loaded = store.load(store.root / "m.pt")
    assert loaded.name == "m" and torch.equal(outputs(loaded.net), outputs(net))


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../evil", "evil"),
        ("/abs", "abs"),
        ("/etc/passwd", "etc_passwd"),
        ("a/b", "a_b"),
        ("a\\b", "a_b"),
        ("C:\\models\\x", "C_models_x"),
        (".hidden", "hidden"),
        ("a..b", "a.b"),
        ("Leber Tümor", "Leber_Tumor"),
        ("liver v2.1", "liver_v2.1"),
        ("  padded  ", "padded"),
        ("bundled-2", "bundled-2"),
    ],
)
def test_sanitize_name(raw, expected):
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "..", ".", "...", "/", "\\", "   ", "肝臓", "___"])
def test_sanitize_name_rejects_names_with_nothing_usable(raw):
    with pytest.raises(ModelError, match="not a usable model name"):
        sanitize_name(raw)


@pytest.mark.parametrize("raw", ["bundled", "BUNDLED", "default", "NUL", "con.txt"])
def test_sanitize_name_rejects_reserved_names(raw):
    with pytest.raises(ModelError, match="reserved"):
        sanitize_name(raw)


def test_sanitize_name_truncates_long_names():
    name = sanitize_name("x" * 200)
    assert name == "x" * 64
    assert len(sanitize_name("a" * 63 + "." + "b" * 10)) <= 64
    assert not sanitize_name("a" * 63 + ".b").endswith(".")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_sanitized_names_stay_inside_the_store(raw):
    root = Path("/store/models")
    try:
        name = sanitize_name(raw)
    except ModelError:
        return
    assert 1 <= len(name) <= 64
    assert model_names.VALID_NAME.fullmatch(name)
    assert os.path.normpath(root / f"{name}.json") == str(root / f"{name}.json")
    assert (root / f"{name}.pt").parent == root
    assert sanitize_name(name) == name


def test_unique_name(store):
    assert store.unique_name("liver") == "liver"
    store.save(make_net(), "liver", meta())
    assert store.unique_name("liver") == "liver-2"
    store.save(make_net(), "liver-2", meta())
    assert store.unique_name("LIVER") == "LIVER-3"
    assert store.unique_name("bundled") == "bundled-2"
    assert store.unique_name("default") == "default-2"
    assert store.unique_name("my model") == "my_model"
    long = "y" * 80
    store.save(make_net(), long, meta())
    candidate = store.unique_name(long)
    assert candidate == "y" * 62 + "-2"
    with pytest.raises(ModelError):
        store.unique_name("..")


# --- refusing unsafe and damaged files ------------------------------------------------------------


def test_refuses_pickled_objects(store, tmp_path):
    UNPICKLED.clear()
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "metadata": meta(network=CONFIG.to_dict()),
                "state_dict": make_net().state_dict(), "evil": Payload()}, path)
    with pytest.raises(ModelError, match="refused for safety") as err:
        store.import_model(path)
    assert "evil.pt" in str(err.value) and "not" in str(err.value)
    assert UNPICKLED == []  # the payload never ran
    assert store.names() == [BUNDLED]


def test_refuses_pickled_object_inside_store_file(store):
    UNPICKLED.clear()
    store.save(make_net(), "m", meta())
    torch.save({"state_dict": make_net().state_dict(), "evil": Payload()}, store.root / "m.pt")
    with pytest.raises(ModelError, match="refused for safety"):
        store.load("m")
    assert UNPICKLED == []


def test_refuses_whole_pickled_module(store, tmp_path):
    path = tmp_path / "module.pt"
    torch.save(make_net(), path)
    with pytest.raises(ModelError, match="refused for safety.*module.pt|module.pt.*refused"):
        store.load(path)


def test_truncated_file(store, tmp_path):
    store.save(make_net(), "m", meta())
    exported = store.export("m", tmp_path / "full.pt")
    half = tmp_path / "half.pt"
    data = exported.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="half.pt.*truncated"):
        store.load(half)
    weights = store.root / "m.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match="m.pt"):
        store.load("m")


@pytest.mark.parametrize("content", [b"", b"garbage bytes " * 50, bytes(range(256)) * 8,
                                     b"PK\x03\x04" + b"\x00" * 200])
def test_garbage_and_empty_files(store, tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="junk.pt"):
        store.load(path)


def test_architecture_mismatch_in_card(store):
    store.save(make_net(), "m", meta())
    card_path = store.root / "m.json"
    card = json.loads(card_path.read_text())
    card["network"]["base"] = 8
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="architecture mismatch"):
        store.load("m")


def test_architecture_mismatch_in_export(store, tmp_path):
    other = build_network(NetworkConfig(base=4, depth=1))
    path = tmp_path / "mismatch.pt"
    torch.save({"format": FORMAT, "format_version": 1, "metadata": meta(network=CONFIG.to_dict()),
                "state_dict": other.state_dict()}, path)
    with pytest.raises(ModelError, match="mismatch.pt.*architecture mismatch"):
        store.import_model(path)
    assert store.names() == [BUNDLED]


@pytest.mark.parametrize("drop", ["network", "classes"])
def test_card_missing_required_keys(store, drop):
    store.save(make_net(), "m", meta())
    card_path = store.root / "m.json"
    card = json.loads(card_path.read_text())
    del card[drop]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=drop):
        store.load("m")


def test_export_from_newer_format_is_refused(store, tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "format_version": 99, "metadata": {}, "state_dict": {}}, path)
    with pytest.raises(ModelError, match="newer"):
        store.load(path)


# --- atomic writes -----------------------------------------------------------------------------


def test_failed_save_leaves_nothing_behind(store, monkeypatch):
    net = make_net(seed=1)
    store.save(net, "m", meta(note="original"))
    before = {p: (store.root / p).read_bytes() for p in files(store.root)}
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(50)  # half-written, then the disk "fails"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        store.save(make_net(seed=2), "m", meta(note="new"), overwrite=True)
    with pytest.raises(OSError, match="No space"):
        store.save(make_net(seed=2), "fresh", meta())
    monkeypatch.undo()
    assert {p: (store.root / p).read_bytes() for p in files(store.root)} == before
    loaded = store.load("m")
    assert loaded.metadata["note"] == "original"
    assert torch.equal(outputs(loaded.net), outputs(net))
    assert store.names() == [BUNDLED, "m"]


def test_failed_card_write_removes_staged_weights(store, monkeypatch):
    store.save(make_net(seed=1), "m", meta())
    before = {p: (store.root / p).read_bytes() for p in files(store.root)}
    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # weights staged, card being written
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(store_mod.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        store.save(make_net(seed=2), "m", meta(), overwrite=True)
    monkeypatch.undo()
    assert len(calls) == 2
    assert {p: (store.root / p).read_bytes() for p in files(store.root)} == before


def test_failed_export_keeps_previous_file(store, tmp_path, monkeypatch):
    store.save(make_net(), "m", meta())
    dest = tmp_path / "export.pt"
    dest.write_bytes(b"previous")

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="interrupted"):
        store.export("m", dest)
    assert dest.read_bytes() == b"previous"
    assert files(tmp_path) == sorted(["export.pt", "models", "weights"])


# --- default -------------------------------------------------------------------------------------


def test_default_and_reset(store, tmp_path, bundled_dir):
    assert store.default() == BUNDLED
    store.save(make_net(), "mine", meta())
    store.set_default("mine")
    assert store.default() == "mine"
    assert json.loads((store.root / "default.json").read_text()) == {"default": "mine"}
    assert ModelStore(root=store.root, bundled_dir=bundled_dir).default() == "mine"
    assert "default" not in store.names()
    store.reset()
    assert store.default() == BUNDLED
    assert not (store.root / "default.json").exists()
    store.set_default("mine")
    store.set_default(BUNDLED)
    assert store.default() == BUNDLED
    with pytest.raises(ModelError, match="no model named"):
        store.set_default("ghost")
    assert store.default() == BUNDLED


def test_default_falls_back_to_bundled(store):
    store.save(make_net(), "mine", meta())
    (store.root / "default.json").write_text(json.dumps({"default": "vanished"}))
    assert store.default() == BUNDLED
    (store.root / "default.json").write_text("{corrupt")
    assert store.default() == BUNDLED
    (store.root / "default.json").write_text(json.dumps({"default": "mine"}))
    assert store.default() == "mine"
    (store.root / "mine.pt").unlink()
    (store.root / "mine.json").unlink()
    assert store.default() == BUNDLED
