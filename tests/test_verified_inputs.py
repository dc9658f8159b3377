"""Nothing unverified is read: trajectory sets through their checksum manifest, projector folders
through the sha256 of their manifest.json, and evaluate refuses a layer above its bound."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import softeq
from softeq import bounds
from softeq.bounds import report
from softeq.cli import main as softeq_cli
from softeq.data.eth_ucy import TrajectoryDataset
from softeq.projectors import files as projector_files
from softeq.projectors.build import clear_cache
from softeq.projectors.files import load_projector
from softeq.spec import Softening
from softeq.stages.common import soften_from, write_projectors

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "eth_ucy"
needs_real = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/eth_ucy is absent")
EXTRA = "eth/test/extra.txt"
HOTEL_TEST = "hotel/test/biwi_hotel.txt"


@pytest.fixture
def real_copy(tmp_path):
    root = tmp_path / "eth_ucy"
    shutil.copytree(SHARED, root)
    return root


def _prepare_ethucy(root: Path, out: Path) -> dict:
    softeq_cli(
        [
            *("prepare-data", "--dataset", "ethucy", "--root", str(root), "--out", str(out)),
            *("--protocol", json.dumps({"obs_len": 8, "pred_len": 12})),
        ]
    )
    return json.loads(out.read_text())


# ---- ETH/UCY and the synthetic set: only the listed, verified files ---------------------------


@needs_real
def test_prepare_rejects_an_extra_ethucy_file_by_name(real_copy, tmp_path):
    assert _prepare_ethucy(real_copy, tmp_path / "clean.json")["files"] == 74
    shutil.copy(real_copy / HOTEL_TEST, real_copy / EXTRA)
    with pytest.raises(SystemExit, match=rf"{EXTRA} is not in the checksum list"):
        _prepare_ethucy(real_copy, tmp_path / "extra.json")
    assert not (tmp_path / "extra.json").exists()


@needs_real
def test_the_ethucy_manifest_lists_every_file_with_its_sha256(real_copy, tmp_path):
    manifest = _prepare_ethucy(real_copy, tmp_path / "ethucy.json")
    assert len(manifest["sha256"]) == 74 and "eth/test/biwi_eth.txt" in manifest["sha256"]
    assert TrajectoryDataset.from_manifest(manifest, "eth", "test").num_agents == 364


@needs_real
def test_an_archive_with_an_extra_member_is_rejected(tmp_path, monkeypatch):
    from softeq.data import eth_ucy_fetch

    archive = tmp_path / "source.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(SHARED.rglob("*.txt")):
            z.write(path, f"sgan/datasets/{path.relative_to(SHARED).as_posix()}")
        z.write(SHARED / HOTEL_TEST, f"sgan/datasets/{EXTRA}")
    monkeypatch.setattr(eth_ucy_fetch, "download", lambda url, dest: shutil.copy(archive, dest))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(ValueError, match=rf"{EXTRA} is not in the checksum list"):
        eth_ucy_fetch.fetch_ethucy(downloads)
    assert not (downloads / "eth_ucy").exists()


@needs_real
def test_a_file_added_after_prepare_fails_at_load(real_copy, tmp_path):
    manifest = _prepare_ethucy(real_copy, tmp_path / "ethucy.json")
    shutil.copy(real_copy / HOTEL_TEST, real_copy / EXTRA)
    with pytest.raises(ValueError, match=rf"{EXTRA} is not in the checksum list"):
        TrajectoryDataset.from_split(real_copy, "eth", "test")  # the root's own list
    with pytest.raises(ValueError, match=rf"{EXTRA} is not in the checksum list"):
        TrajectoryDataset.from_manifest(manifest, "eth", "test")


@needs_real
def test_a_file_edited_after_prepare_fails_at_load(real_copy, tmp_path):
    manifest = _prepare_ethucy(real_copy, tmp_path / "ethucy.json")
    edited = real_copy / "eth/test/biwi_eth.txt"
    edited.write_text(edited.read_text() + "99990\t1.0\t1.0\t1.0\n")
    with pytest.raises(ValueError, match=r"eth/test/biwi_eth\.txt: sha256 mismatch"):
        TrajectoryDataset.from_split(real_copy, "eth", "test")
    with pytest.raises(ValueError, match=r"eth/test/biwi_eth\.txt: sha256 mismatch"):
        TrajectoryDataset.from_manifest(manifest, "eth", "test")
    assert len(TrajectoryDataset.from_manifest(manifest, "eth", "train")) > 0  # others still read


def test_synthetic_set_is_read_through_its_list(tmp_path):
    out = tmp_path / "synthetic.json"
    softeq_cli(["prepare-data", "--dataset", "synthetic", "--out", str(out)])
    manifest = json.loads(out.read_text())
    root = Path(manifest["root"])
    assert manifest["files"] == len(manifest["sha256"]) == 28
    clean = TrajectoryDataset.from_manifest(manifest, "corridor000", "test", 4, 3)
    stray = root / "corridor000/test/stray.txt"
    shutil.copy(root / "corridor060/test/corridor060.txt", stray)
    with pytest.raises(ValueError, match=r"corridor000/test/stray\.txt is not in the checksum"):
        TrajectoryDataset.from_manifest(manifest, "corridor000", "test", 4, 3)
    with pytest.raises(ValueError, match=r"corridor000/test/stray\.txt is not in the checksum"):
        TrajectoryDataset.from_split(root, "corridor000", "test", 4, 3)
    stray.unlink()
    held_out = root / "corridor000/test/corridor000.txt"
    held_out.write_text(held_out.read_text()[:-200])
    with pytest.raises(ValueError, match=r"corridor000\.txt: sha256 mismatch"):
        TrajectoryDataset.from_manifest(manifest, "corridor000", "test", 4, 3)
    assert clean.num_agents > 0


@needs_real
def test_workflow_reruns_prepare_when_a_data_file_is_added(real_copy, tmp_path):
    """The root's files are inputs of prepare: an added file reruns it, and it fails by name."""
    import yaml

    with open(ROOT / "config/config.yaml") as f:
        config = yaml.safe_load(f)
    config["results"] = str(tmp_path / "results")
    config["resources"] = str(tmp_path / "resources")
    config["allow_outside"] = True  # results in a temporary folder
    config["datasets"]["ethucy"] = {"root": str(real_copy)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    target = str(tmp_path / "resources/data/ethucy.json")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["snakemake", target, "--cores", "1", "--configfile", str(path)]

    def snakemake() -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)

    first = snakemake()
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    shutil.copy(real_copy / HOTEL_TEST, real_copy / EXTRA)
    second = snakemake()
    assert second.returncode != 0, "prepare was not rerun after a data file was added"
    log = (ROOT / "logs/prepare_data/ethucy.log").read_text()
    assert f"{EXTRA} is not in the checksum list" in log


# ---- projector folders: a sha256 per file, checked before use ----------------------------------

SOFTENING = Softening.from_dict({"group": "SO2", "softness": 0.0, "filter": "shrink"})


def _pairs_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4))


@pytest.fixture
def projector_dir(tmp_path):
    clear_cache()
    out = tmp_path / "projectors"
    write_projectors(_pairs_model(), SOFTENING.with_features("pairs"), out)
    clear_cache()
    yield out
    clear_cache()


def _first_file(folder: Path) -> Path:
    return sorted(folder.glob("*.safetensors"))[0]


def test_projector_manifest_lists_a_sha256_per_file(projector_dir):
    manifest = json.loads((projector_dir / "manifest.json").read_text())
    assert manifest["files"] and set(manifest["sha256"]) == set(manifest["files"])
    assert projector_files.verify_projector_dir(projector_dir) == manifest["sha256"]
    soften_from(_pairs_model(), SOFTENING.with_features("pairs"), str(projector_dir))


def test_a_flipped_projector_byte_fails_the_load_naming_the_file(projector_dir):
    path = _first_file(projector_dir)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match=rf"{path.name}: sha256 mismatch"):
        soften_from(_pairs_model(), SOFTENING.with_features("pairs"), str(projector_dir))


def test_a_corrupt_safetensors_header_names_the_file(projector_dir):
    path = _first_file(projector_dir)
    data = bytearray(path.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")  # header length far beyond the file
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path.name}: not a readable softeq projector file"):
        load_projector(path)
    # through softeq.soften's cache (no manifest check): still a ValueError naming the file
    with pytest.raises(ValueError, match=path.name):
        softeq.soften(_pairs_model(), "SO2", 0.0, features="pairs", cache_dir=projector_dir)


def test_a_missing_projector_folder_fails_finetune(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit, match="no such projector folder"):
        soften_from(_pairs_model(), SOFTENING.with_features("pairs"), str(missing))
    assert not missing.exists()  # nothing was built into it
    missing.mkdir()
    with pytest.raises(SystemExit, match=r"manifest\.json: missing"):
        soften_from(_pairs_model(), SOFTENING.with_features("pairs"), str(missing))


def test_bounds_check_names_a_layer_over_its_bound(projector_dir):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    good = softeq.soften(_pairs_model(), "SO2", 0.0, features="pairs", cache_dir=projector_dir)
    bounds.check(report(good))  # an exact projector passes: measured ~ 1e-8 against bound 0
    clear_cache()
    for path in projector_dir.glob("*.safetensors"):  # the projector becomes the identity
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata()
        tensors = load_file(path)
        if "op.alpha" in tensors:
            tensors["op.alpha"][:] = 1.0
            tensors["op.beta"][:] = 0.0
        else:
            tensors["op.matrix"] = np.eye(len(tensors["op.matrix"]))
        save_file(tensors, path, metadata=meta)
    model = softeq.soften(_pairs_model(), "SO2", 0.0, features="pairs", cache_dir=projector_dir)
    records = report(model)
    assert max(r.measured - r.bound for r in records) > 0.1
    with pytest.raises(ValueError, match=r"0\.weight: measured .* > bound 0"):
        bounds.check(records)
    with pytest.raises(ValueError, match=r"2\.weight"):
        bounds.check([r.as_dict() for r in records])


# ---- through the stages: evaluate on a tampered folder ------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny soft trajectory model trained one epoch on the synthetic set (CLI, in-process)."""
    tmp = tmp_path_factory.mktemp("stages")
    data = tmp / "synthetic.json"
    softeq_cli(["prepare-data", "--dataset", "synthetic", "--out", str(data)])
    spec = json.dumps({"preset": "tiny", "kwargs": {"d_model": 8, "layers": 1, "ffn": 16}})
    softening = json.dumps({"group": "SO2", "softness": 0.0, "filter": "shrink"})
    common = ["--task", "trajectory", "--data", str(data), "--threads", "1"]
    clear_cache()
    projectors = tmp / "projectors"
    softeq_cli(
        [
            *("projectors", *common, "--backbone-spec", spec),
            *("--softening", softening, "--out", str(projectors)),
        ]
    )
    clear_cache()
    model = tmp / "model.pt"
    finetune = ["finetune", *common, "--dataset", "synthetic-corridor000", "--backbone-spec", spec]
    finetune += ["--softening", softening, "--recipe", json.dumps({"epochs": 1, "lr": 1e-3})]
    softeq_cli([*finetune, "--projectors", str(projectors), "--out", str(model)])
    clear_cache()
    return tmp, common, projectors, model, finetune


def _evaluate(tmp, common, projectors, model) -> list[str]:
    return [
        "evaluate",
        *common,
        "--dataset",
        "synthetic-corridor000",
        "--backbone",
        "transformer",
        "--model",
        str(model),
        "--projectors",
        str(projectors),
        "--out",
        str(tmp / "m.json"),
        "--eval",
        json.dumps({"sweep": [0]}),
    ]


def test_evaluate_refuses_a_flipped_projector_byte(trained, tmp_path):
    tmp, common, projectors, model, _ = trained
    copy = tmp_path / "projectors"
    shutil.copytree(projectors, copy)
    path = _first_file(copy)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    clear_cache()
    with pytest.raises(SystemExit, match=rf"{path.name}: sha256 mismatch"):
        softeq_cli(_evaluate(tmp, common, copy, model))
    assert not (tmp / "m.json").exists()
    clear_cache()
    softeq_cli(_evaluate(tmp, common, projectors, model))  # the intact folder evaluates
    assert json.loads((tmp / "m.json").read_text())["bounds"]


def test_finetune_with_a_missing_projector_folder_fails(trained, tmp_path):
    _, _, _, _, finetune = trained
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit, match="no such projector folder"):
        softeq_cli([*finetune, "--projectors", str(missing), "--out", str(tmp_path / "m.pt")])
    assert not missing.exists() and not (tmp_path / "m.pt").exists()
