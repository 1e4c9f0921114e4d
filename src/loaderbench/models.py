"""Image classifiers, randomly initialised (nothing is downloaded), and the one way to build
the configured model: :func:`build_model` wires in the dataset's class count and sample shape,
:func:`check_model` runs it once on a real sample before the run opens."""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any

import torch
import torchvision
from hydra.utils import instantiate
from torch import nn

from loaderbench.config import ConfigError, locate

log = logging.getLogger(__name__)
# Builders that return extra outputs in training mode unless told not to (weights=None).
_PLAIN_LOGITS = {"googlenet": {"aux_logits": False, "init_weights": True},
                 "inception_v3": {"aux_logits": False, "init_weights": True}}  # fmt: skip


class SmallCNN(nn.Module):
    """Four conv blocks and a linear head; works at any input resolution (global pooling)."""

    def __init__(self, *, num_classes: int, width: int = 32, channels_last: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 4):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def torchvision_model(*, arch: str, num_classes: int, channels_last: bool = False) -> nn.Module:
    """A torchvision architecture (``resnet18``, ``mobilenet_v3_small``, ...), random weights."""
    return torchvision_classifier(name=arch, num_classes=num_classes, channels_last=channels_last)


def torchvision_classifier(
    *,
    name: str,
    num_classes: int,
    input_shape: tuple[int, ...] | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Any torchvision classification model by name, random weights; a ViT is built for the
    dataset's (square) image size."""
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(names)}"
        raise ConfigError(
            f"model.name={name}: not a torchvision classification model; {hint} "
            "(python -c 'import torchvision; print(torchvision.models.list_models(module="
            "torchvision.models))' lists them)"
        )
    extra: dict[str, Any] = dict(_PLAIN_LOGITS.get(name, {}))
    if name.startswith("vit_") and input_shape is not None and input_shape[-1] == input_shape[-2]:
        extra["image_size"] = input_shape[-1]
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_model(
    spec: dict[str, Any], *, num_classes: int, input_shape: tuple[int, ...]
) -> tuple[nn.Module, dict[str, str]]:
    """The model ``spec`` (the resolved ``model`` config) describes, given ``num_classes`` and
    ``input_shape`` when its signature names them. Returns it with the config keys its target
    does not take (left out, with why): ``model._target_=mypkg.Net`` over the small_cnn option
    leaves ``width`` behind, which Net never sees."""
    spec = dict(spec)
    path = spec.pop("_target_")
    channels_last = bool(spec.pop("channels_last", False))
    target = locate("model._target_", path)
    params = inspect.signature(target).parameters
    anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    who = getattr(target, "__qualname__", path)
    left_out = {k: f"{who} takes no {k}" for k in spec if not (anything or k in params)}
    kwargs = {k: v for k, v in spec.items() if k not in left_out}
    if anything or "num_classes" in params:
        kwargs["num_classes"] = num_classes
    if "input_shape" in params:
        kwargs["input_shape"] = tuple(input_shape)
    if "channels_last" in params:
        kwargs["channels_last"] = channels_last
    for key in left_out:
        log.warning("model.%s=%s left out: %s", key, spec[key], left_out[key])
    try:
        model = instantiate({"_target_": path, **kwargs})
    except ConfigError:
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(
            f"model._target_={path}: {who}({', '.join(kwargs)}) raised "
            f"{type(cause).__name__}: {cause}; pass its arguments as +model.NAME=VALUE"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model._target_={path}: gave {type(model).__qualname__}, not an nn.Module"
        )
    if channels_last and "channels_last" not in params:
        model = model.to(memory_format=torch.channels_last)
    return model, left_out


@torch.no_grad()
def check_model(
    model: nn.Module, images: torch.Tensor, num_classes: int, device: torch.device
) -> None:
    """One forward pass in eval mode on ``images`` (a real batch): the logits must be
    (batch, num_classes). Eval mode draws no random numbers and updates no statistics, so
    the check changes nothing the run then measures or learns."""
    was_training = model.training
    model.eval()
    shape = tuple(images.shape)
    name = type(model).__qualname__
    try:
        out = model(images.to(device))
    except Exception as exc:
        raise ConfigError(
            f"model {name} fails on a batch of the dataset's samples, shape {shape} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "choose dataset.image_size / transforms that give the input it needs, or another model"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"model {name} returns {type(out).__qualname__}; the training step needs the "
            "logits tensor (return logits only, e.g. out.logits)"
        )
    if tuple(out.shape) != (shape[0], num_classes):
        raise ConfigError(
            f"model {name} gives logits of shape {tuple(out.shape)} for a batch of {shape[0]}; "
            f"the dataset has {num_classes} classes, so it must be ({shape[0]}, {num_classes}): "
            "take num_classes in the model's signature (loaderbench passes it)"
        )
