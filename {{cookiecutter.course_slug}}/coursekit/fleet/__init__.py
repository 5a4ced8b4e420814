"""Fleets: one environment per seat, planned purely and applied by a provider (fleet/provider.py)."""
from __future__ import annotations

from coursekit.fleet.provider import PROVIDERS, fleet_for, provider_class

__all__ = ["PROVIDERS", "fleet_for", "provider_class"]
