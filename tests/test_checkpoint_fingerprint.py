"""A training checkpoint is bound to its inputs: changed data, model spec or init weights start
the run over (never republish the finished run's weights), identical inputs resume, an unreadable
checkpoint names the file and the command that clears it, and a failed stage leaves no output of
an earlier run behind (docs/conventions.md §3, resume and atomic outputs)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from softeq.cli import main
from softeq.data.embedded import build_digits
from softeq.engine.checkpoint import CorruptCheckpointError, load_checkpoint
from softeq.engine.fingerprint import CHECKPOINT_FORMAT, Fingerprint
from softeq.io import file_sha256
from softeq.models import BackboneSpec, build_backbone

SPEC = {
    "timm": "vit_tiny_patch16_224",
    "input_size": 32,
    "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2},
}
RECIPE = {"epochs": 1, "batch_size": 128, "lr": 1e-3, "warmup_epochs": 0.5}
SOFTENING = {"group": "C4", "softness": 0.5, "softness_pos": 0.5, "filter": "shrink"}


def _finetune(
    data: Path, out: Path, spec: dict = SPEC, init: Path | None = None, stale: tuple = ()
) -> None:
    main(
        [
            "finetune",
            *(["--invalidates", *map(str, stale)] if stale else []),
            "--data",
            str(data),
            *(["--init", str(init)] if init is not None else []),
            "--backbone-spec",
            json.dumps(spec),
            "--softening",
            json.dumps(SOFTENING),
            "--recipe",
            json.dumps(RECIPE),
            "--seed",
            "3",
            "--checkpoint",
            f"{out}.ckpt",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )


def _evaluate(data: Path, model: Path, out: Path) -> None:
    main(
        [
            "evaluate",
            "--data",
            str(data),
            "--model",
            str(model),
            "--dataset",
            "digits",
            "--backbone",
            "vit",
            "--eval",
            json.dumps({"sweep": [0, 90]}),
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _init_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_backbone(BackboneSpec.from_dict(SPEC), 10)
    torch.save({"model": model.state_dict(), "backbone": SPEC}, path)
    return path


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copy(run, to)
    shutil.copy(f"{run}.ckpt", f"{to}.ckpt")
    return to


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return build_digits(tmp_path_factory.mktemp("data") / "digits.safetensors")


@pytest.fixture(scope="module")
def finished(digits, tmp_path_factory) -> Path:
    """A finished fine-tuning run: model.pt and its training checkpoint."""
    out = tmp_path_factory.mktemp("finished") / "model.pt"
    _finetune(digits, out)
    return out


def test_fingerprint_digest_is_stable_and_names_changes():
    a = Fingerprint(recipe={"epochs": 1}, seed=3, model=SPEC, data="d1", init=None)
    b = Fingerprint(recipe={"epochs": 1}, seed=3, model=json.loads(json.dumps(SPEC)), data="d1")
    assert a.digest() == b.digest() and a.to_dict()["format"] == CHECKPOINT_FORMAT
    c = Fingerprint(recipe={"epochs": 1}, seed=3, model=SPEC, data="d2", init="i")
    assert c.changed(a.to_dict()) == ["data", "init"]
    assert a.changed(None) == ["format"]  # a checkpoint of the unfingerprinted format


def test_identical_inputs_resume_and_the_model_carries_the_fingerprint(
    digits, finished, tmp_path, capsys
):
    run = _copy_run(finished, tmp_path / "model.pt")
    capsys.readouterr()
    _finetune(digits, run)
    assert "same inputs, resuming after epoch 1" in capsys.readouterr().err
    assert _same(_weights(run), _weights(finished))
    stored = load_checkpoint(run)["fingerprint"]
    assert stored["data"] == file_sha256(digits) and stored["init"] is None
    assert stored == load_checkpoint(f"{run}.ckpt")["fingerprint"]


def _relabelled(digits: Path, to: Path) -> Path:
    """The digits file with the training labels shifted: another dataset, same shapes."""
    with safe_open(str(digits), framework="pt") as handle:
        metadata = handle.metadata()
        names = list(handle.keys())  # a safetensors handle is not iterable
        tensors = {key: handle.get_tensor(key) for key in names}
    tensors["train_y"] = (tensors["train_y"] + 1) % 10
    save_file(tensors, str(to), metadata=metadata)
    return to


@pytest.mark.parametrize("change", ["data", "model"])
def test_changed_inputs_retrain_instead_of_republishing(change, digits, finished, tmp_path, capsys):
    run = _copy_run(finished, tmp_path / "model.pt")
    data, spec = digits, SPEC
    if change == "data":
        data = _relabelled(digits, tmp_path / "digits_relabelled.safetensors")
    else:
        spec = {**SPEC, "kwargs": {**SPEC["kwargs"], "drop_rate": 0.25}}  # same shapes
    capsys.readouterr()
    _finetune(data, run, spec=spec)
    log = capsys.readouterr().err
    assert f"checkpoint {run}.ckpt was written for other inputs ({change}): starting over" in log
    assert not _same(_weights(run), _weights(finished))  # retrained, not the old weights
    state = load_checkpoint(run)
    assert state["fingerprint"]["data"] == file_sha256(data)
    assert state["fingerprint"]["model"] == spec
    assert [h["epoch"] for h in state["history"]] == [1]


def test_changed_init_weights_retrain(digits, tmp_path, capsys):
    run = tmp_path / "model.pt"
    _finetune(digits, run, init=_init_file(tmp_path / "a.pt", 0))
    first = _weights(run)
    init = _init_file(tmp_path / "b.pt", 1)
    capsys.readouterr()
    _finetune(digits, run, init=init)
    assert "written for other inputs (init): starting over" in capsys.readouterr().err
    assert not _same(_weights(run), first)
    assert load_checkpoint(run)["fingerprint"]["init"] == file_sha256(init)


def test_truncated_training_checkpoint_starts_over(digits, finished, tmp_path, capsys):
    run = _copy_run(finished, tmp_path / "model.pt")
    checkpoint = Path(f"{run}.ckpt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    _finetune(digits, run)
    log = capsys.readouterr().err
    assert f"checkpoint {checkpoint} is unreadable: starting over" in log
    assert _same(_weights(run), _weights(finished))  # the redone run is bit-identical
    load_checkpoint(checkpoint)  # replaced by a readable one


def test_truncated_model_names_the_file_and_leaves_no_stale_metrics(digits, finished, tmp_path):
    model = shutil.copy(finished, tmp_path / "model.pt")
    metrics = tmp_path / "metrics.json"
    _evaluate(digits, model, metrics)
    assert metrics.exists()
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"rm {model}`")) as error:
        _evaluate(digits, model, metrics)
    assert str(model) in str(error.value)
    assert not metrics.exists()  # the failed rerun left no earlier result that looks current


def test_failed_finetune_leaves_no_old_model_or_metrics(digits, finished, tmp_path):
    run = _copy_run(finished, tmp_path / "model.pt")
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")  # the evaluation of the run before
    init = _init_file(tmp_path / "init.pt", 0)
    init.write_bytes(init.read_bytes()[:500])
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"rm {init}`")):
        _finetune(digits, run, init=init, stale=(metrics,))
    assert not run.exists() and not metrics.exists()


TRAJECTORY_SPEC = {"preset": "tiny", "kwargs": {"d_model": 8, "layers": 1, "heads": 2, "ffn": 8}}
TRAJECTORY_SOFTENING = {"group": "SO2", "softness": 0.5, "filter": "shrink"}


def test_trajectory_skip_change_retrains(tmp_path, capsys):
    """The issue's probe: ``datasets.synthetic.skip: 3`` after a finished run."""
    run = tmp_path / "model.pt"
    for skip in (1, 3):
        manifest = tmp_path / f"synthetic_skip{skip}.json"
        protocol = json.dumps({"obs_len": 4, "pred_len": 3, "skip": skip})
        main(
            [
                "prepare-data",
                "--dataset",
                "synthetic",
                "--out",
                str(manifest),
                "--protocol",
                protocol,
            ]
        )
        capsys.readouterr()
        main(
            [
                "finetune",
                *("--task", "trajectory", "--data", str(manifest), "--threads", "1"),
                *("--dataset", "synthetic-corridor000"),
                *("--backbone-spec", json.dumps(TRAJECTORY_SPEC)),
                *("--softening", json.dumps(TRAJECTORY_SOFTENING)),
                *("--recipe", json.dumps({"epochs": 1, "batch_size": 64, "lr": 1e-3})),
                *("--checkpoint", f"{run}.ckpt", "--out", str(run)),
            ]
        )
    assert "written for other inputs (data): starting over" in capsys.readouterr().err
    assert load_checkpoint(run)["fingerprint"]["data"] == file_sha256(manifest)
