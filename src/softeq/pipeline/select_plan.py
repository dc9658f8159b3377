"""Where the files of the selection experiments go, and what their rules read (docs/selection.md).

Halving's candidate ``b`` trains in rungs inside its run folder (``<run>/halving/rung~<r>/``:
``model.pt``, ``state.pt``, ``val.json``, and ``test.json`` for the winner); the rung decisions
(``rung~<r>.json``) are Snakemake checkpoints in the selection's folder, so the DAG is re-read
after each rung.  Zeroshot's candidates are scored in ``<run>/zeroshot/``; its choice
(``choice.json``) is a checkpoint and the chosen b's ordinary fine-tune follows.  Input functions
that depend on a decision take Snakemake's ``checkpoints`` object.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from softeq.pipeline.config import Run
from softeq.pipeline.selections import (
    SELECT_DIR,
    Selection,
    resolve_selections,
    selection_splits,
)

__all__ = ["HALVING", "TRIAL_PATTERN", "ZEROSHOT", "SelectionPlan"]

HALVING = "halving"
ZEROSHOT = "zeroshot"
TRIAL_PATTERN = r"halving/rung~[0-9]+|zeroshot"
"""A candidate's trial folder inside its run folder: a halving rung, or the zero-shot model."""


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class SelectionPlan:
    """The file plan of a config's selections; a candidate's files lie in its run folder
    (``run_dir``, with Snakemake wildcards), its jobs' benchmark files under ``benchmarks``."""

    def __init__(self, config: dict[str, Any], run_dir: str, benchmarks: str) -> None:
        self.results = config["results"]
        self.run_dir = run_dir  # a run's folder, with Snakemake wildcards
        self.selections = resolve_selections(config)
        self.by_key = {(s.strategy, *s.key): s for s in self.selections}
        self.select_dir = f"{self.results}/{SELECT_DIR}"
        self.benchmarks = benchmarks  # the folder of Snakemake's per-job benchmark files

    # ---- lookups ----------------------------------------------------------------------------

    def of(self, wildcards: Any, strategy: str | None = None) -> Selection:
        """The selection a job of ``wildcards`` belongs to."""
        w = wildcards
        strategy = strategy or w.strategy
        key = (strategy, w.task, w.dataset, w.backbone, w.group, w.filter, int(w.seed))
        if key not in self.by_key:
            raise ValueError(f"no {strategy} selection for {key[1:]} in the config")
        return self.by_key[key]

    def _run_path(self, run: Run) -> str:
        return f"{self.results}/{run.path}"

    # ---- halving rungs ----------------------------------------------------------------------

    def rung_until(self, wildcards: Any) -> int:
        """The epoch of the full schedule at which the rung of ``wildcards`` ends."""
        return self.of(wildcards, HALVING).rung_ends[int(wildcards.rung)]

    def previous_state(self, wildcards: Any) -> list[str]:
        """The state the rung continues: the same candidate's previous rung (none for rung 0)."""
        rung = int(wildcards.rung)
        if rung == 0:
            return []
        fields = dict(wildcards.items()) if hasattr(wildcards, "items") else vars(wildcards)
        return [self.run_dir.format(**fields) + f"/halving/rung~{rung - 1}/state.pt"]

    @staticmethod
    def resume_arg(wildcards: Any, input: Any) -> str:
        previous = list(input.previous) if not isinstance(input.previous, str) else []
        return f"--resume-from {shlex.quote(previous[0])}" if previous else ""

    @staticmethod
    def split_args(wildcards: Any) -> str:
        """``--train-split`` / ``--val-split`` of a candidate's training job."""
        train, val = selection_splits(wildcards.dataset)
        return f"--train-split {train} --val-split {val}"

    @staticmethod
    def trial_eval(wildcards: Any, settings: str) -> str:
        """A trial's evaluation settings (JSON): validation scoring skips the angle sweep (only
        the clean and rotated metrics rank candidates); the winner's test evaluation is whole."""
        if wildcards.split == "test":
            return settings
        return json.dumps({**json.loads(settings), "sweep": []}, sort_keys=True)

    @staticmethod
    def eval_split(wildcards: Any) -> str:
        """The data split of a candidate's ``val`` / ``test`` evaluation."""
        return "test" if wildcards.split == "test" else selection_splits(wildcards.dataset)[1]

    def alive(self, selection: Selection, rung: int, checkpoints: Any) -> list[float]:
        """The candidates rung ``rung`` trains (the survivors of the previous decision)."""
        if rung == 0:
            return list(selection.candidates)
        decision = self.decision(selection, rung - 1, checkpoints)
        return [float(b) for b in _read_json(decision)["kept"]]

    def decision(self, selection: Selection, rung: int, checkpoints: Any) -> str:
        """The file of rung ``rung``'s decision (raises until that checkpoint has run)."""
        fields = self._select_fields(selection)
        return checkpoints.rung_decision.get(**fields, rung=str(rung)).output[0]

    def rung_scores(self, wildcards: Any, checkpoints: Any) -> list[str]:
        """The validation scores that rung ``wildcards.rung``'s decision ranks."""
        selection = self.of(wildcards, HALVING)
        rung = int(wildcards.rung)
        alive = self.alive(selection, rung, checkpoints)
        return [self._trial(selection, b, f"halving/rung~{rung}") + "/val.json" for b in alive]

    def decision_args(self, wildcards: Any) -> str:
        """The arguments of ``softeq select`` for a rung: metric, rung, its end, how many stay."""
        selection = self.of(wildcards, HALVING)
        rung = int(wildcards.rung)
        sizes, ends = selection.sizes, selection.rung_ends
        keep = sizes[rung + 1] if rung + 1 < len(sizes) else 1
        args = ["--metric", selection.metric, "--rung", rung, "--until-epoch", ends[rung]]
        return shlex.join(str(a) for a in [*args, "--keep", keep])

    def _trial(self, selection: Selection, softness: float, trial: str) -> str:
        return f"{self._run_path(selection.run(softness))}/{trial}"

    def _select_fields(self, selection: Selection) -> dict[str, str]:
        return {
            "task": selection.task,
            "dataset": selection.dataset,
            "backbone": selection.backbone,
            "group": selection.group,
            "filter": selection.filter,
            "seed": str(selection.seed),
        }

    # ---- zeroshot ---------------------------------------------------------------------------

    def zeroshot_scores(self, wildcards: Any) -> list[str]:
        selection = self.of(wildcards, ZEROSHOT)
        return [self._trial(selection, b, "zeroshot") + "/val.json" for b in selection.candidates]

    def zeroshot_args(self, wildcards: Any) -> str:
        selection = self.of(wildcards, ZEROSHOT)
        args = ["--metric", selection.metric, "--rule", selection.rule]
        return shlex.join(str(a) for a in [*args, "--tolerance", selection.tolerance])

    # ---- the summary ------------------------------------------------------------------------

    def summary_inputs(self, wildcards: Any, checkpoints: Any) -> dict[str, list[str]]:
        """The decisions, the chosen model's test metrics and the benchmark files of every job
        the selection ran (its cost), plus the full sweep's when the config runs it."""
        selection = self.of(wildcards)
        if selection.strategy == HALVING:
            return self._halving_inputs(selection, checkpoints)
        return self._zeroshot_inputs(selection, checkpoints)

    def _halving_inputs(self, selection: Selection, checkpoints: Any) -> dict[str, list[str]]:
        rungs = len(selection.sizes)
        decisions = [self.decision(selection, r, checkpoints) for r in range(rungs)]
        costs = []
        for rung in range(rungs):
            for b in self.alive(selection, rung, checkpoints):
                log = selection.run(b).path
                costs.append(f"{self.benchmarks}/rung/{log}/rung~{rung}.tsv")
                costs.append(f"{self.benchmarks}/evaluate/{log}/halving/rung~{rung}/val.tsv")
        (winner,) = [float(b) for b in _read_json(decisions[-1])["kept"]]
        test = self._trial(selection, winner, f"halving/rung~{rungs - 1}") + "/test.json"
        return {"decisions": decisions, "test": [test], "costs": costs}

    def _zeroshot_inputs(self, selection: Selection, checkpoints: Any) -> dict[str, list[str]]:
        fields = self._select_fields(selection)
        choice = checkpoints.zeroshot_choice.get(**fields).output[0]
        chosen = float(_read_json(choice)["kept"][0])
        costs = []
        for b in selection.candidates:
            log = selection.run(b).path
            costs.append(f"{self.benchmarks}/zeroshot/{log}.tsv")
            costs.append(f"{self.benchmarks}/evaluate/{log}/zeroshot/val.tsv")
        run = selection.run(chosen)
        costs.append(f"{self.benchmarks}/finetune/{run.path}.tsv")
        return {
            "decisions": [choice],
            "test": [f"{self._run_path(run)}/metrics.json"],
            "costs": costs,
        }

    def sweep_inputs(self, wildcards: Any, runs: list[Run]) -> dict[str, list[str]]:
        """The full sweep of the selection's candidates (test metrics and fine-tune benchmarks),
        when every candidate also runs as an ordinary experiment; else nothing."""
        selection = self.of(wildcards)
        wanted = [selection.run(b) for b in selection.candidates]
        if not set(wanted) <= set(runs):
            return {"sweep": [], "sweep_costs": []}
        return {
            "sweep": [f"{self._run_path(run)}/metrics.json" for run in wanted],
            "sweep_costs": [f"{self.benchmarks}/finetune/{run.path}.tsv" for run in wanted],
        }

    def summary_args(self, wildcards: Any, input: Any) -> str:
        """The arguments of ``softeq selection-summary`` from its named inputs.  Before the
        decisions exist Snakemake holds the job with placeholder inputs: nothing to name yet."""
        if not hasattr(input, "decisions"):
            return "--decisions (after the selection's decisions)"
        args = ["--epochs", str(self.of(wildcards).epochs)]
        args += ["--decisions", *input.decisions, "--test", *input.test]
        args += ["--costs", *input.costs]
        if list(input.sweep):
            args += ["--sweep", *input.sweep, "--sweep-costs", *input.sweep_costs]
        return shlex.join(args)

    def summaries(self, families: set[str] | None = None) -> list[str]:
        """Every selection's record (of the given dataset families only, if any)."""
        return [
            f"{self.results}/{s.path}/selection.json"
            for s in self.selections
            if families is None or s.dataset.split("-", 1)[0] in families
        ]

    def outputs(self) -> list[str]:
        """The selection table and figure (nothing without selection experiments)."""
        if not self.selections:
            return []
        tables = [f"{self.results}/tables/selection{name}.csv" for name in ("", "_study")]
        return [*tables, f"{self.results}/figures/selection.png"]
