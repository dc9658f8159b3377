"""What the reference's optimizer does to the Hugging Face models it fine-tunes (docs/fidelity.md,
rows "layer decay" and "drop path").

Provenance (ashiq24/soft-equivariance at 7f5a9e9cafcfe8919d0e20fe511f0197570fe48c):
train_imagenet.sh passes ``--layer-decay 0.65 --drop-path 0.1``; main_imagenet.py builds the
model with ``get_model(softeq_cfg['model'])`` (a transformers model; the drop-path argument is
never passed to it) and the optimizer with timm's ``create_optimizer_v2(model, ...)``, which
groups layers with ``param_groups_layer_decay``.  A transformers model has neither a timm
``group_matcher`` nor a ``pretrained_cfg`` naming its classifier, so timm's fallback puts every
parameter in one group: the layer decay is a no-op, and paper.yaml sets ``layer_decay: null``.
"""

import pytest
import torch
from timm.optim import create_optimizer_v2
from transformers import ViTConfig, ViTForImageClassification

from softeq.engine.classification import Recipe, build_optimizer


def _hf_vit() -> torch.nn.Module:
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=48,
        num_labels=10,
    )
    return ViTForImageClassification(config)


def test_timm_layer_decay_is_a_no_op_on_a_transformers_model():
    model = _hf_vit()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-5, weight_decay=0.05, layer_decay=0.65)
    scales = {group["lr_scale"] for group in optimizer.param_groups}
    assert scales == {1.0}  # one layer: every parameter at the full learning rate
    # weight decay: 1-d tensors excluded, the positional embedding and CLS token decayed
    decayed = {
        id(p)
        for group in optimizer.param_groups
        if group["weight_decay"] > 0
        for p in group["params"]
    }
    embeddings = model.vit.embeddings
    assert id(embeddings.position_embeddings) in decayed and id(embeddings.cls_token) in decayed
    assert all(id(p) not in decayed for p in model.parameters() if p.ndim <= 1)


def test_softeq_refuses_a_layer_decay_it_cannot_apply():
    with pytest.raises(ValueError, match="group_matcher"):
        build_optimizer(_hf_vit(), Recipe(layer_decay=0.65))
    groups = build_optimizer(_hf_vit(), Recipe(lr=1e-5)).param_groups  # layer_decay: null
    assert {group["lr"] for group in groups} == {1e-5}
