import pytest
import torch

from napari_fcnseg.core.device import available_devices, configure_threads, pick_device


def test_cpu_always_available_and_auto_picks_the_best():
    devices = available_devices()
    assert devices[-1] == "cpu"
    assert pick_device("auto").type == devices[0]
    assert pick_device("cpu") == torch.device("cpu")


def test_env_var_forces_a_device(monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_DEVICE", "cpu")
    assert pick_device().type == "cpu"


def test_unknown_or_missing_device_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        pick_device("tpu")
    if "cuda" not in available_devices():
        with pytest.raises(ValueError, match="not available"):
            pick_device("cuda")


def test_thread_count_is_set_once():
    first = configure_threads()
    assert configure_threads(first + 3) == first == torch.get_num_threads()


def test_training_precision_follows_the_setting_and_the_hardware(monkeypatch):
    import napari_fcnseg.core.device as device_mod
    from napari_fcnseg.core.device import native_bfloat16, training_dtype

    cpu = torch.device("cpu")
    assert training_dtype("float32", cpu) == torch.float32
    assert training_dtype("bfloat16", cpu) == torch.bfloat16
    # never bfloat16 by default off the CPU (not measured there)
    assert training_dtype("auto", torch.device("cuda")) == torch.float32
    assert not native_bfloat16(torch.device("meta"))
    monkeypatch.setattr(device_mod, "native_bfloat16", lambda device: True)
    assert training_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(device_mod, "native_bfloat16", lambda device: False)
    assert training_dtype("auto", cpu) == torch.float32
    with pytest.raises(ValueError, match="unknown precision"):
        training_dtype("half", cpu)
