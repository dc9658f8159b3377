"""What a training checkpoint was made from: a fingerprint stored in it and in the published model.

A resumed run must be the run that wrote the checkpoint: same model spec, softening, recipe,
seed, data and init weights, and a checkpoint written by this format.  The fingerprint holds
those inputs (files by their sha256: a dataset manifest stands for the files it lists), so a
change to any of them is seen, and named, before a checkpoint is resumed
(docs/conventions.md §3, resume).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from softeq.io import file_sha256

__all__ = ["CHECKPOINT_FORMAT", "Fingerprint", "changed_fields", "file_digest_or_none"]

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout; 1 was the unfingerprinted (recipe, seed) checkpoint."""


def file_digest_or_none(path: str | Path | None) -> str | None:
    """sha256 of ``path`` (None when no file is given); a missing file names itself."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file (needed for the checkpoint fingerprint)")
    return file_sha256(path)


def _plain(value: Any) -> Any:
    """A JSON-able copy of ``value`` (dataclasses as dicts, tuples as lists)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class Fingerprint:
    """The inputs of one training run.  Fields a caller does not know stay None.

    ``data`` and ``init`` are sha256 digests of the ``--data`` and ``--init`` files; ``model``,
    ``softening`` and ``recipe`` are plain (JSON-able) mappings.
    """

    recipe: Any
    seed: int
    model: Any = None
    softening: Any = None
    data: str | None = None
    init: str | None = None
    task: str | None = None
    stage: str | None = None
    format: int = field(default=CHECKPOINT_FORMAT)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: plain JSON values only (a weights-only ``torch.load`` reads it)."""
        return {key: _plain(value) for key, value in asdict(self).items()}

    def digest(self) -> str:
        """A stable sha256 of :meth:`to_dict` (key order and tuple/list spelling do not matter)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def changed(self, stored: Any) -> list[str]:
        """The fields in which the checkpoint's stored fingerprint differs from this one."""
        return changed_fields(self.to_dict(), stored)


def changed_fields(current: dict[str, Any], stored: Any) -> list[str]:
    """Names of the keys of ``current`` that ``stored`` lacks or holds another value for; a
    checkpoint without a fingerprint (an older format) differs in ``format``."""
    if not isinstance(stored, dict):
        return ["format"]
    return [key for key, value in current.items() if stored.get(key) != value]
