"""Golden facts: the ETH/UCY windows of the paper's reference loader, reproduced by softeq's
windowing on the real files (docs/fidelity.md, window rule), directly and through the jobs that
config/paper.yaml plans."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from softeq.data.eth_ucy import SGAN_MIN_AGENTS, TrajectoryDataset
from softeq.data.listing import ethucy_sums
from softeq.pipeline import validate_config
from softeq.pipeline.plan import Plan
from softeq.stages import trajectory as stage
from softeq.stages.data import trajectory_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "eth_ucy"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/eth_ucy is absent")

# Provenance of GOLDEN.  Reference: ashiq24/soft-equivariance at commit 7f5a9e9,
# data_loader/padded_human_trajectory.py, PaddedHumanTrajectoryDataset.__init__ (lines 27-67: a
# window over seq_len consecutive unique frames; an agent counts when present in all of them; the
# window is kept when agents > min_ped).  Run outside this repository, on the 74 files of
# ../shared/data/eth_ucy (sha256 as softeq/data/checksums/eth_ucy.sha256):
#   git -C <mirror of the reference> archive 7f5a9e9 data_loader config | tar -x -C /tmp/ref-scratch
#   then, with numpy and torch, for each scene, split and (obs_len, pred_len) in (10, 10), (8, 12):
#   ds = PaddedHumanTrajectoryDataset(f"{root}/{scene}/{split}", obs_len=obs_len,
#                                     pred_len=pred_len, skip=1, min_ped=1)
#   windows = ds.num_seq; agent-windows = sum(s["num_peds"] for s in ds.sequences)
# (min_ped 1 and skip 1 as in both configs of the reference's config/trajectory.yaml; 10 / 10 is
# its filtered config, 8 / 12 its non-equivariant one.)  Both lengths make 20-frame windows, so the
# reference gave identical counts for the two; they are listed once.
# The reference pads every window to the largest of the fold's train, val and test splits
# (data_loader/padded_human_trajectory.py:272, traj_main.py:98-99): max_people, measured with the
# loader above for both lengths and every scene (eth: train 57, val 42, test 5; univ: 14, 13, 57).
REFERENCE_MAX_PEOPLE = 57

GOLDEN = {  # (scene, split): (windows, agent-windows)
    ("eth", "train"): (2785, 29809),
    ("eth", "val"): (660, 5349),
    ("eth", "test"): (70, 181),
    ("hotel", "train"): (2594, 29152),
    ("hotel", "val"): (621, 5136),
    ("hotel", "test"): (301, 1053),
    ("univ", "train"): (2076, 9231),
    ("univ", "val"): (530, 2708),
    ("univ", "test"): (947, 24334),
    ("zara1", "train"): (2322, 28010),
    ("zara1", "val"): (605, 5118),
    ("zara1", "test"): (602, 2253),
    ("zara2", "train"): (2112, 25507),
    ("zara2", "val"): (501, 4173),
    ("zara2", "test"): (921, 5833),
}
REFERENCE_LENGTHS = {"transformer": (10, 10), "transformerbase": (8, 12)}  # paper.yaml backbones


def counts(data: TrajectoryDataset) -> tuple[int, int]:
    return len(data), data.num_agents


@pytest.mark.parametrize("lengths", [(10, 10), (8, 12)], ids=["obs10-pred10", "obs8-pred12"])
@pytest.mark.parametrize(("scene", "split"), sorted(GOLDEN), ids="-".join)
def test_softeq_windows_are_the_references(scene, split, lengths):
    data = TrajectoryDataset.from_split(
        SHARED, scene, split, *lengths, checksums=ethucy_sums(), min_agents=SGAN_MIN_AGENTS
    )
    assert counts(data) == GOLDEN[scene, split]


@pytest.fixture(scope="module")
def paper_job(tmp_path_factory):
    """The manifest paper.yaml's prepare job writes for a local copy, and its Plan."""
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    protocol = json.loads(plan.prepare_protocol(SimpleNamespace(family="ethucy")))
    out = tmp_path_factory.mktemp("data") / "ethucy.json"
    trajectory_manifest(SHARED, ethucy_sums(), out, protocol)
    return plan, json.loads(out.read_text())


@pytest.mark.parametrize("backbone", sorted(REFERENCE_LENGTHS))
@pytest.mark.parametrize("scene", sorted({scene for scene, _ in GOLDEN}))
def test_paper_jobs_read_the_references_windows(paper_job, backbone, scene):
    plan, manifest = paper_job
    spec = json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))
    model = stage.job_model(spec, manifest, scene)
    assert (model.obs_len, model.pred_len) == REFERENCE_LENGTHS[backbone]
    if hasattr(model, "max_agents"):  # a scene model: padded to the fold's largest window
        assert model.max_agents == REFERENCE_MAX_PEOPLE
    for split in ("train", "val", "test"):
        assert counts(stage.job_split(manifest, scene, split, model)) == GOLDEN[scene, split]
