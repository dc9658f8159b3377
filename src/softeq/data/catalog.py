"""Names of the datasets' fixed parts, importable without torch (the pipeline reads them)."""

from __future__ import annotations

__all__ = ["ETHUCY_SCENES", "SYNTHETIC_SCENES"]

ETHUCY_SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
"""The five ETH/UCY scenes; each names one leave-one-scene-out split."""

SYNTHETIC_SCENES = ("corridor000", "corridor060", "corridor105", "corridor150")
"""The synthetic trajectory scenes, named after their corridor orientation in degrees."""
