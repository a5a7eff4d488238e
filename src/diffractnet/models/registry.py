"""``create_model(name, task, in_chans, num_outputs, pretrained)`` over timm backbones and our own nets.

Names: ``small_cnn``, ``resnet18``/``34``/``50``/``101``/``152``, ``densenet121``, ``swin_t``, ``xception``.
``pretrained``: ``None``/``False`` (random init), a local ``.safetensors`` file (ImageNet-style backbone
weights: the first conv is adapted to ``in_chans`` and a mismatched head is dropped, by timm), or
``"hub"`` (timm downloads the published weights; needs the internet).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from diffractnet.errors import ConfigError

TASKS = ("spacegroup", "orientation")
_TIMM_NAMES = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
    "resnet152": "resnet152", "densenet121": "densenet121", "swin_t": "swin_tiny_patch4_window7_224",
    "xception": "legacy_xception",
}
_NEEDS_IMAGE_SIZE = {"swin_t"}


def list_models() -> list[str]:
    """All names ``create_model`` accepts."""
    return ["small_cnn", *_TIMM_NAMES]


def create_model(name: str, task: str = "spacegroup", in_chans: int = 1, num_outputs: int = 10,
                 pretrained: str | Path | bool | None = None, image_size: int = 128, **kwargs) -> nn.Module:
    """A network mapping (B, in_chans, image_size, image_size) images to (B, num_outputs).

    ``task`` is one of ``TASKS`` (it fixes nothing in the architecture yet, but is recorded and checked
    when loading); extra ``kwargs`` go to the builder (e.g. ``width``, ``kernel_size`` for small_cnn).
    """
    if name not in list_models():
        raise ConfigError(f"unknown model '{name}'; choose from {list_models()}")
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; choose from {TASKS}")
    if int(in_chans) < 1 or int(num_outputs) < 1:
        raise ConfigError(f"in_chans and num_outputs must be >= 1, got {in_chans} and {num_outputs}")
    if name == "small_cnn":
        if kwargs.get("head") == "flatten":
            kwargs = {"image_size": image_size, **kwargs}
        try:
            return _small_cnn(in_chans, num_outputs, pretrained, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"small_cnn: {exc}") from None
    return _timm_model(name, in_chans, num_outputs, pretrained, image_size, **kwargs)


def _small_cnn(in_chans: int, num_outputs: int, pretrained, **kwargs) -> nn.Module:
    from diffractnet.models.small_cnn import SmallCNN

    model = SmallCNN(in_chans=in_chans, num_classes=num_outputs, **kwargs)
    if pretrained not in (None, False):
        if pretrained == "hub":
            raise ConfigError("small_cnn has no published weights; give a local .safetensors file")
        from diffractnet.models.checkpoint import load_backbone_weights

        load_backbone_weights(model, Path(pretrained))
    return model


def _timm_model(name: str, in_chans: int, num_outputs: int, pretrained, image_size: int, **kwargs) -> nn.Module:
    import timm

    args = dict(in_chans=in_chans, num_classes=num_outputs, **kwargs)
    if name in _NEEDS_IMAGE_SIZE:
        args["img_size"] = image_size
    if pretrained in (None, False):
        return timm.create_model(_TIMM_NAMES[name], pretrained=False, **args)
    if pretrained in ("hub", True):
        return timm.create_model(_TIMM_NAMES[name], pretrained=True, **args)
    path = Path(pretrained)
    if not path.is_file() or path.suffix != ".safetensors":
        raise ConfigError(f"pretrained weights '{path}' must be an existing .safetensors file (or 'hub')")
    try:
        return timm.create_model(_TIMM_NAMES[name], pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **args)
    except Exception as exc:  # timm/safetensors raise many kinds for a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"pretrained weights '{path}' do not fit {name}: {first[:200]}") from None
