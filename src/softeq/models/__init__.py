"""Backbone recipes: timm models built from a config spec, with pre-trained weights when asked."""

from softeq.models.backbones import BackboneSpec, build_backbone

__all__ = ["BackboneSpec", "build_backbone"]
