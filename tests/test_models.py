"""Model zoo, self-describing checkpoints, local pretrained weights, and their error paths."""

from __future__ import annotations

import json

import pytest
import torch

from diffractnet.errors import ConfigError, DataError
from diffractnet.models import create_model, list_models, load_model, read_model_metadata, save_model


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_one_channel_any_size(name):
    size = 64
    model = create_model(name, "spacegroup", in_chans=1, num_outputs=5, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    if name != "swin_t":  # swin's window grid is fixed at creation: other sizes need another image_size
        with torch.no_grad():
            assert model(torch.randn(1, 1, 96, 96)).shape == (1, 5)


def test_save_load_round_trip_and_task_check(tmp_path):
    model = create_model("small_cnn", num_outputs=3, width=8).eval()
    meta = {"arch": "small_cnn", "task": "spacegroup", "in_chans": 1, "num_outputs": 3, "image_size": 32,
            "model_kwargs": {"width": 8}, "class_labels": [221, 225, 229]}
    path = save_model(tmp_path / "m.safetensors", model, meta)
    loaded, got = load_model(path, task="spacegroup")
    x = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert got["class_labels"] == [221, 225, 229]
    with pytest.raises(ConfigError, match="spacegroup model, not a orientation"):
        load_model(path, task="orientation")


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match="bad.safetensors"):
        read_model_metadata(bad)
    pickle_ckpt = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, pickle_ckpt)
    with pytest.raises(DataError, match="model.pt"):
        load_model(pickle_ckpt)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(DataError, match="not written by diffractnet"):
        load_model(foreign)
    model = create_model("small_cnn", num_outputs=3, width=8)
    meta = {"arch": "small_cnn", "task": "spacegroup", "in_chans": 1, "num_outputs": 4, "image_size": 32,
            "model_kwargs": {"width": 8}}
    wrong = save_model(tmp_path / "wrong.safetensors", model, meta)  # head says 4 outputs, weights have 3
    with pytest.raises(DataError, match="do not match"):
        load_model(wrong)
    with pytest.raises(DataError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_pretrained_from_a_local_file_adapts_first_conv_and_drops_head(tmp_path):
    import timm
    from safetensors.torch import save_file

    imagenet_like = timm.create_model("resnet18", pretrained=False, in_chans=3, num_classes=1000)
    state = {k: v.contiguous() for k, v in imagenet_like.state_dict().items()}
    path = tmp_path / "resnet18_rgb.safetensors"
    save_file(state, str(path))
    model = create_model("resnet18", num_outputs=5, pretrained=path)
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert model.fc.weight.shape == (5, 512)
    own = create_model("small_cnn", num_outputs=5, width=8)
    own_path = tmp_path / "own.safetensors"
    save_file({k: v.contiguous() for k, v in own.state_dict().items()}, str(own_path))
    again = create_model("small_cnn", num_outputs=7, width=8, pretrained=own_path)  # head size differs
    torch.testing.assert_close(again.features[0].weight, own.features[0].weight)


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'alexnet'"):
        create_model("alexnet")
    with pytest.raises(ConfigError, match="unknown task"):
        create_model("small_cnn", task="poetry")
    with pytest.raises(ConfigError, match="safetensors"):
        create_model("resnet18", pretrained=tmp_path / "missing.safetensors")
    (tmp_path / "x.safetensors").write_text(json.dumps({"not": "weights"}))
    with pytest.raises(ConfigError):
        create_model("resnet18", pretrained=tmp_path / "x.safetensors")


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "swin_t"])
def test_inference_model_gives_the_same_outputs(name):
    """``for_inference``: BatchNorms folded into their convolutions where fx can trace the model (none
    left in the small CNN and ResNet18), channels-last layout, outputs equal to the trained model's;
    the trained model itself is left as it was."""
    from diffractnet.models.inference import for_inference

    torch.manual_seed(0)
    model = create_model(name, "spacegroup", in_chans=1, num_outputs=5, image_size=64).eval()
    for m in model.modules():  # non-trivial running statistics, so folding has something to get right
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-4, rtol=1e-4)
    if name != "swin_t":
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
