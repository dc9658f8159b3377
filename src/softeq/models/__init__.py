"""Models by name (:func:`create_model`, the registry) and timm classification backbones."""

from softeq.models.backbones import BackboneSpec, build_backbone, build_classifier
from softeq.models.registry import create_model, list_models, register_model

__all__ = [
    "BackboneSpec",
    "build_backbone",
    "build_classifier",
    "create_model",
    "list_models",
    "register_model",
]
