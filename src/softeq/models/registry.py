"""Models by name, in the spirit of timm's ``create_model``: one registry for every task.

A backend module registers a builder under each architecture name it provides
(``@register_model("segformer_hf", task="segmentation")``); callers build with
``create_model(name, **kwargs)`` and never import a backend's internals.  The built-in backends
are imported on first use, one task at a time, so asking for a trajectory model does not import
timm or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["BUILTIN_MODULES", "ModelEntry", "create_model", "list_models", "register_model"]

BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "classification": ("softeq.models.backbones",),
    "segmentation": (
        "softeq.models.seg_vit",
        "softeq.models.seg_hf_vit",
        "softeq.models.segformer_hf",
        "softeq.models.segformer_mmseg",
    ),
    "trajectory": ("softeq.models.trajectory", "softeq.models.scene_transformer"),
}
"""The modules that register each task's built-in models (imported lazily)."""

Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its name, its task and the function that builds it."""

    name: str
    task: str
    builder: Callable[..., Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, task: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` as model ``name`` of ``task``; names are unique across
    tasks (re-registering the same function, e.g. on a module reload, is allowed)."""

    def decorate(builder: Builder) -> Builder:
        old = _REGISTRY.get(name)
        same = old is not None and (old.task == task and _origin(old.builder) == _origin(builder))
        if old is not None and not same:
            raise ValueError(
                f"model {name!r} is already registered ({old.task}, {_origin(old.builder)})"
            )
        _REGISTRY[name] = ModelEntry(name, task, builder)
        return builder

    return decorate


def _origin(builder: Callable[..., Any]) -> str:
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', '?')}"


def _load_builtins(task: str | None) -> None:
    if task is not None and task not in BUILTIN_MODULES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(BUILTIN_MODULES)}")
    for key, modules in BUILTIN_MODULES.items():
        if task is None or key == task:
            for module in modules:
                importlib.import_module(module)


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models (of ``task`` when given)."""
    _load_builtins(task)
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)


def create_model(name: str, *, task: str | None = None, **kwargs: Any) -> Any:
    """Build registered model ``name`` with the builder's ``kwargs``.

    ``task`` restricts the lookup (and the backends imported) to one task.  An unknown name
    raises ``ValueError`` naming it and listing the known models.
    """
    entry = _REGISTRY.get(name)
    if entry is None or (task is not None and entry.task != task):
        _load_builtins(task)
        entry = _REGISTRY.get(name)
    if entry is None or (task is not None and entry.task != task):
        known = list_models(task)
        what = f"{task} model" if task else "model"
        raise ValueError(f"unknown {what} {name!r}; known {what}s: {', '.join(known)}")
    return entry.builder(**kwargs)
