"""The layers the reference softens in ResNet-50 and SegFormer-B0 (golden lists), and that
config/paper.yaml's jobs soften exactly those (docs/fidelity.md, kernel-size rule).

Reference: ashiq24/soft-equivariance at 7f5a9e9.  ``models/filtered_resnet.py:177-181`` softens a
conv when ``kernel_size > 1`` unless ``kernel_size <= 3 and soft_thresholding > 0.8``;
``models/filtered_segformer.py:167-169`` the same with ``> 0.9``; neither softens anything at
b = 1 (``filtered_resnet.py:101``, ``filtered_segformer.py:99``).  ``min_filter_size`` (e.g.
``--min_filter_size 5`` in ``scripts/run_segmentation_pasvoc.sh:38-42``) only selects layers to
freeze, and ``freeze_filters`` is false (``config/segmentation.yaml:34``), so it changes nothing.

Golden lists: the reference's ``FilteredResNet`` / ``FilteredSegformer`` constructors run
unchanged on a ``git archive`` of 7f5a9e9 in a scratch folder, offline, with random weights: their
hub loader (``from_pretrained``) was replaced by the same architecture from its transformers
config (``ResNetConfig()`` = microsoft/resnet-50, bottleneck, depths 3-4-6-3;
``SegformerConfig(num_labels=150)`` = MiT-b0 of nvidia/segformer-b0-finetuned-ade-512-512), with
transformers 5.24.0 (module names are that version's), and the names of the ``FilteredConv2d``
modules listed::

    cd /tmp/refskip && HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/refskip:<einops import stub> python -c '
      ... ResNetForImageClassification.from_pretrained = lambda *a, **k: ...(ResNetConfig())
      FilteredResNet(dict(pretrained_model="microsoft/resnet-50", num_labels=1000,
          group_type="rotation", n_rotations=18, soft_thresholding=b,
          decomposition_method="schur", preserve_norm=False, load_pretrained_weight=False))
      FilteredSegformer(dict(..., n_rotations=36, soft_thresholding=b, hard_mask=True,
          joint_decomposition=False))
      print(sorted(n for n, m in model.named_modules() if isinstance(m, FilteredConv2d)))'

for b = 0.95 (the paper's runs: ``scripts/run_imagenet.sh:14, 19``,
``scripts/run_segmentation_pasvoc.sh:38-42``) and at the rule's edges, b = 0.8 (ResNet) and
b = 0.9 (SegFormer), where every conv with a kernel above 1 is softened.
"""

import argparse
import json
from pathlib import Path

import pytest
import yaml

from softeq.pipeline import validate_config
from softeq.pipeline.plan import Plan
from softeq.spec import Softening
from softeq.stages import classification, segmentation

ROOT = Path(__file__).resolve().parents[1]

# the reference's FilteredConv2d modules at b = 0.95 (transformers' ResNet names)
RESNET50_SOFTENED_095 = ["resnet.embedder.embedder.convolution"]
# every conv with kernel > 1 (all softened at b <= 0.8): the 7 x 7 stem and the 16 3 x 3 convs
RESNET50_KERNELS = {"resnet.embedder.embedder.convolution": 7} | {
    f"resnet.encoder.stages.{stage}.layers.{block}.layer.1.convolution": 3
    for stage, blocks in enumerate((3, 4, 6, 3))
    for block in range(blocks)
}
SEGFORMER_B0_SOFTENED_095 = [
    "segformer.stages.0.blocks.0.attention.sequence_reduction.sequence_reduction",
    "segformer.stages.0.blocks.1.attention.sequence_reduction.sequence_reduction",
    "segformer.stages.0.patch_embeddings.proj",
    "segformer.stages.1.blocks.0.attention.sequence_reduction.sequence_reduction",
    "segformer.stages.1.blocks.1.attention.sequence_reduction.sequence_reduction",
]
# every conv with kernel > 1 (all softened at b <= 0.9): patch embeddings 7, 3, 3, 3; spatial
# reduction 8, 4, 2 (stage 3 has none); the 3 x 3 depthwise convs of the Mix-FFN
SEGFORMER_B0_KERNELS = (
    {f"segformer.stages.{s}.patch_embeddings.proj": k for s, k in enumerate((7, 3, 3, 3))}
    | {
        f"segformer.stages.{s}.blocks.{b}.attention.sequence_reduction.sequence_reduction": k
        for s, k in enumerate((8, 4, 2))
        for b in range(2)
    }
    | {f"segformer.stages.{s}.blocks.{b}.mlp.dwconv.dwconv": 3 for s in range(4) for b in range(2)}
)


def hf_name(reference: str) -> str:
    """softeq's name of a reference conv: paper.yaml's ResNet-50 and SegFormer are the same
    transformers models, held under ``model``."""
    return f"model.{reference}"


def test_the_golden_lists_are_the_rule_applied_to_the_kernel_sizes():
    assert len(RESNET50_KERNELS) == 17 and len(SEGFORMER_B0_KERNELS) == 18
    for kernels, softened, above in (
        (RESNET50_KERNELS, RESNET50_SOFTENED_095, 0.8),
        (SEGFORMER_B0_KERNELS, SEGFORMER_B0_SOFTENED_095, 0.9),
    ):
        assert above < 0.95
        assert sorted(name for name, k in kernels.items() if k > 3) == softened


@pytest.fixture(scope="module")
def plan() -> Plan:
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    return Plan(config)


def job_layers(plan: Plan, backbone: str, softening: Softening, tmp_path: Path) -> list[str]:
    """The layers the ``projectors`` job of a paper.yaml run softens: its ``--backbone-spec``
    and ``--softening`` JSON from the Plan, through the task's stage, read from the manifest."""
    run = next(r for r in plan.runs if r.backbone == backbone)
    wildcards = run.wildcards(softening)
    args = argparse.Namespace(
        task=run.task,
        backbone_spec=json.loads(plan.backbone_spec(wildcards)),
        softening=Softening.from_json(plan.softening(wildcards)),
        out=str(tmp_path),
        device="cpu",
        threads=1,
    )
    stage = {"classification": classification, "segmentation": segmentation}[run.task]
    stage.projectors(args)
    layers = json.loads((tmp_path / "manifest.json").read_text())["layers"]
    return sorted(layer["name"].removesuffix(".weight") for layer in layers)


def paper_softenings(plan: Plan, backbone: str) -> list[Softening]:
    return sorted({r.softening for r in plan.runs if r.backbone == backbone}, key=str)


def test_paper_runs_resnet50_and_segformerb0_at_the_checked_softness(plan):
    expected = {"resnet50": {0.95}, "resnet50base": {1.0}, "segformerb0": {0.95, 1.0}}
    for backbone, softness in expected.items():
        assert {s.softness for s in paper_softenings(plan, backbone)} == softness


@pytest.mark.parametrize(
    ("backbone", "golden", "rename"),
    [
        ("resnet50", RESNET50_SOFTENED_095, hf_name),
        ("resnet50base", RESNET50_SOFTENED_095, hf_name),
        ("segformerb0", SEGFORMER_B0_SOFTENED_095, hf_name),
    ],
)
def test_paper_jobs_soften_the_layers_the_reference_softens(
    plan, backbone, golden, rename, tmp_path
):
    for i, softening in enumerate(paper_softenings(plan, backbone)):
        layers = job_layers(plan, backbone, softening, tmp_path / str(i))
        # at b = 1 the reference softens nothing; softeq wraps the same layers as at 0.95 with
        # the identity (rank filter at b = 1), which computes the same model
        assert layers == sorted(rename(name) for name in golden), softening


@pytest.mark.parametrize(
    ("backbone", "group", "edge", "kernels", "rename"),
    [
        ("resnet50", "C18", 0.8, RESNET50_KERNELS, hf_name),
        ("segformerb0", "C36", 0.9, SEGFORMER_B0_KERNELS, hf_name),
    ],
)
def test_at_the_rules_edge_every_kernel_above_one_is_softened(
    plan, backbone, group, edge, kernels, rename, tmp_path
):
    layers = job_layers(plan, backbone, Softening(group, edge, filter="rank"), tmp_path)
    assert layers == sorted(rename(name) for name in kernels)
