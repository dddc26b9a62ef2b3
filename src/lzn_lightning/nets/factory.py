"""Image encoders and decoders chosen by name, each with its own arguments (as timm's ``create_model``).

``ImageModality(encoder=..., decoder=...)`` names a network as a string (``"tower"``) or a dict
``{"name": "tower", **its own arguments}``. The modality passes what it owns (the image ``channels`` and
``size``, the latent size, and for decoders ``num_classes`` and ``latent_conditioning``); every other argument
belongs to the network and has the network's own default.

* Encoders: ``tower`` (:class:`AnchorTower`), ``ncsnpp`` (:class:`NCSNppEncoder`), ``resnet50_gn``
  (:class:`GroupNormResNet`); any other timm model name is that backbone with the projection head
  (:class:`TimmAnchorEncoder`), and a dotted name (``my_pkg.nets.MyEncoder``) is imported.
* Decoders: ``unet`` (:class:`LatentUNet`), ``ncsnpp`` (:class:`NCSNppDecoder`); a dotted name is imported.

What a network must offer:

* an encoder: ``forward(x) -> [B, out_dim]`` anchors, ``features(x) -> [B, C]`` its pre-head features, and a
  class attribute ``representation``, ``"anchor"`` or ``"features"``: which of the two is the representation
  ``ImageModality.embed`` returns;
* a decoder: ``forward(x, t, latent, labels) -> velocity [B, C, H, W]``
  (:mod:`lzn_lightning.nets.rectified_flow`).

:func:`register_image_encoder` and :func:`register_image_decoder` add a network under a short name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from lzn_lightning.nets.anchor_tower import AnchorTower
from lzn_lightning.nets.ncsnpp import NCSNppDecoder, NCSNppEncoder
from lzn_lightning.nets.resnet_gn import GroupNormResNet
from lzn_lightning.nets.timm_encoder import TimmAnchorEncoder
from lzn_lightning.nets.unet import LatentUNet

REPRESENTATIONS = ("anchor", "features")
Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class _Network:
    """A registered network: how to build it, and its names for the arguments the modality passes."""

    build: Callable[..., nn.Module]
    given: dict[str, str | None]  # modality's argument -> the network's parameter (None: it takes none)
    name_argument: str | None = None  # the parameter that gets the name itself (timm's backbone)

    def own_arguments(self) -> list[str] | None:
        """The arguments a user may set (None: any, the network takes ``**kwargs``)."""
        params = inspect.signature(self.build).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        taken = {*self.given.values(), self.name_argument}
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in params if p.kind in keyword and p.name not in taken]

    def __call__(self, name: str, given: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
        args = {self.given[k]: v for k, v in given.items() if self.given.get(k) is not None}
        if self.name_argument is not None:
            args[self.name_argument] = name
        return self.build(**args, **kwargs)


_ENCODER_GIVEN = ("channels", "size", "out_dim")
_DECODER_GIVEN = ("channels", "size", "latent_dim", "num_classes", "latent_conditioning")
_ENCODERS: dict[str, _Network] = {}
_DECODERS: dict[str, _Network] = {}
_TIMM = _Network(TimmAnchorEncoder, {"channels": "channels", "size": None, "out_dim": "out_dim"}, "backbone")


def register_image_encoder(
    name: str, *, channels: str = "channels", size: str | None = "size", out_dim: str = "out_dim"
) -> Callable[[Builder], Builder]:
    """Register an image encoder under ``name`` (a decorator for its class or a function that builds it).

    The network is called with keyword arguments: the modality's image ``channels`` and ``size`` and the
    latent size ``out_dim``, plus the network's own arguments from the recipe. The keywords rename those three
    for a network whose parameters are called otherwise (None: it takes no ``size``).

    Args:
        name: The short name recipes use (``encoder: {name: ..., ...}``).
        channels: The network's parameter for the image channels.
        size: The network's parameter for the image size, or None.
        out_dim: The network's parameter for the anchor size (the latent dimension).

    Raises:
        ValueError: ``name`` is already registered.
    """
    return _register(_ENCODERS, "encoder", name, {"channels": channels, "size": size, "out_dim": out_dim})


def register_image_decoder(name: str) -> Callable[[Builder], Builder]:
    """Register a rectified-flow image decoder under ``name`` (a decorator for its class or builder).

    The network is called with the keyword arguments ``channels``, ``size``, ``latent_dim``, ``num_classes``
    and ``latent_conditioning`` from the modality, plus its own arguments from the recipe.

    Raises:
        ValueError: ``name`` is already registered.
    """
    return _register(_DECODERS, "decoder", name, {k: k for k in _DECODER_GIVEN})


def _register(
    registry: dict[str, _Network], kind: str, name: str, given: dict[str, str | None]
) -> Callable[[Builder], Builder]:
    if name in registry:
        raise ValueError(f"an image {kind} named {name!r} is already registered")

    def add(build: Builder) -> Builder:
        registry[name] = _Network(build, given)
        return build

    return add


def image_encoders() -> list[str]:
    """The registered encoder names (any timm model name works too)."""
    return sorted(_ENCODERS)


def image_decoders() -> list[str]:
    """The registered decoder names."""
    return sorted(_DECODERS)


def network_name_and_args(spec: str | Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    """``"tower"`` or ``{"name": "tower", **args}`` as ``(name, args)``; ``what`` names it in errors.

    Raises:
        ValueError: Neither a name nor a dict with a string ``name``.
    """
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        args = dict(spec)
        return args.pop("name"), args
    raise ValueError(f"{what} must be a network name or {{name: ..., <its arguments>}}, got {spec!r}")


def _imported(name: str, kind: str) -> _Network | None:
    """A dotted name as an importable network (None: not a dotted name)."""
    if "." not in name:
        return None
    module, _, attr = name.rpartition(".")
    try:
        build = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import image {kind} {name!r}: {err}") from err
    given = _ENCODER_GIVEN if kind == "encoder" else _DECODER_GIVEN
    return _Network(build, {k: k for k in given})


def _encoder(name: str) -> _Network:
    if name in _ENCODERS:
        return _ENCODERS[name]
    import timm  # only for names we do not know: importing timm takes a while

    if timm.is_model(name):
        return _TIMM
    network = _imported(name, "encoder")
    if network is None:
        raise ValueError(
            f"unknown image encoder {name!r}: registered are {', '.join(image_encoders())}; any timm model "
            "name (timm.list_models()) or a dotted import path works too"
        )
    return network


def _decoder(name: str) -> _Network:
    network = _DECODERS.get(name) or _imported(name, "decoder")
    if network is None:
        raise ValueError(
            f"unknown image decoder {name!r}: registered are {', '.join(image_decoders())}, or a dotted "
            "import path"
        )
    return network


def _check(kind: str, name: str, network: _Network, args: Mapping[str, Any]) -> None:
    own = network.own_arguments()
    unknown = [k for k in args if own is not None and k not in own]
    if unknown:
        built = getattr(network.build, "__name__", str(network.build))
        given = ", ".join(k for k in network.given if network.given[k] is not None)
        raise ValueError(
            f"image {kind} {name!r} ({built}) takes no argument {', '.join(map(repr, unknown))}; its own "
            f"arguments are {', '.join(own or [])} ({given} come from the modality)"
        )


def check_image_encoder(name: str, **kwargs: Any) -> None:
    """Raise a one-line ValueError for an unknown encoder ``name`` or an argument it does not take."""
    _check("encoder", name, _encoder(name), kwargs)


def check_image_decoder(name: str, **kwargs: Any) -> None:
    """Raise a one-line ValueError for an unknown decoder ``name`` or an argument it does not take."""
    _check("decoder", name, _decoder(name), kwargs)


def create_image_encoder(name: str, *, channels: int, size: int, out_dim: int, **kwargs: Any) -> nn.Module:
    """Build the image encoder ``name`` with its own arguments ``kwargs``.

    Args:
        name: A registered name, a timm model name or a dotted import path.
        channels: Image channels.
        size: Image height = width.
        out_dim: Anchor size (the latent dimension).
        **kwargs: The encoder's own arguments.

    Raises:
        ValueError: An unknown name or argument.
        TypeError: The network lacks ``features`` or a valid ``representation``.
    """
    network = _encoder(name)
    _check("encoder", name, network, kwargs)
    net = network(name, {"channels": channels, "size": size, "out_dim": out_dim}, kwargs)
    features = getattr(net, "features", None)
    if getattr(net, "representation", None) not in REPRESENTATIONS or not callable(features):
        raise TypeError(
            f"image encoder {name!r} ({type(net).__name__}) must define features(x) and a class attribute "
            f"representation, one of {REPRESENTATIONS}"
        )
    return net


def create_image_decoder(
    name: str,
    *,
    channels: int,
    size: int,
    latent_dim: int,
    num_classes: int = 0,
    latent_conditioning: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build the rectified-flow image decoder ``name`` with its own arguments ``kwargs``.

    Args:
        name: A registered name or a dotted import path.
        channels: Image channels.
        size: Image height = width.
        latent_dim: Size of the LZN latent it is conditioned on.
        num_classes: Classes of its one-hot label input (0: none).
        latent_conditioning: False: the latent input is always zeros (plain RF baseline).
        **kwargs: The decoder's own arguments.

    Raises:
        ValueError: An unknown name or argument.
    """
    network = _decoder(name)
    _check("decoder", name, network, kwargs)
    given = dict(
        channels=channels,
        size=size,
        latent_dim=latent_dim,
        num_classes=num_classes,
        latent_conditioning=latent_conditioning,
    )
    return network(name, given, kwargs)


register_image_encoder("tower")(AnchorTower)
register_image_encoder("ncsnpp", out_dim="latent_dim")(NCSNppEncoder)
register_image_encoder("resnet50_gn", size=None)(GroupNormResNet)
register_image_decoder("unet")(LatentUNet)
register_image_decoder("ncsnpp")(NCSNppDecoder)
