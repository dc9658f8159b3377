"""Golden facts: the parameter counts of the reference's two trajectory configs, against
softeq's presets of them (softeq.models.scene_transformer; docs/fidelity.md).

Provenance: ashiq24/soft-equivariance at 7f5a9e9cafcfe8919d0e20fe511f0197570fe48c, run outside
this repository (git archive into a scratch folder; torch 2.14): ``sum(p.numel() for p in
model.parameters())`` of models/autoregressive_transformer.py ``AutoregressiveTransformer`` (the
non-equivariant config of config/trajectory.yaml:1-46: obs 8, pred 12, d 256, 8 heads, 8
layers, FFN 1024, eq_nonlin) and models/filtered_autoreg_transformer.py
``FilteredAutoregressiveTransformer`` (the filtered config, :51-104: obs 10, pred 10, d 128, 4
heads, 4 layers, FFN 512, eq_nonlin, convert_layer_norms), both with max_people = 57 (the
largest window of every fold).  Closed form, A agents, T = obs + pred steps, L layers, FFN F:
4 A d + 2 A + d + T d + L (8 d^2 + 2 d F + 15 d + F + 1), with 9 d in place of 15 d for the
filtered config (its layer norms have no weights).

Each layer of the reference is an ``nn.TransformerDecoderLayer`` whose cross-attention attends to
an empty memory: its output is its out_proj bias, and its in_proj weight and bias and out_proj
weight (4 d^2 + 3 d per layer) get a zero gradient (measured: exactly 0).  softeq keeps the bias
(``memory_bias``) and leaves the dead weights out, so its count is the reference's minus those.
"""

import pytest

from softeq.models.registry import create_model

MAX_PEOPLE = 57
REFERENCE = {  # preset: (reference parameter count, of which dead cross-attention weights)
    "reference-nonequivariant": (8_491_386, 2_103_296),
    "reference-filtered": (1_087_222, 263_680),
}


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_the_presets_have_the_references_live_parameters(preset):
    model = create_model(preset, task="trajectory", max_agents=MAX_PEOPLE)
    total, dead = REFERENCE[preset]
    assert count(model) == total - dead


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_the_dead_weights_follow_the_closed_form(preset):
    model = create_model(preset, task="trajectory", max_agents=MAX_PEOPLE)
    d, layers = model.config.d_model, model.config.layers
    assert REFERENCE[preset][1] == layers * (4 * d * d + 3 * d)
