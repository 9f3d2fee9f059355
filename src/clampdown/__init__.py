"""Clampdown: turns API threat detections into enforced, verified, reversible action."""

from clampdown.model import Finding, Kind, RemediationState, Severity

__version__ = "0.1.0"

__all__ = ["Finding", "Kind", "RemediationState", "Severity", "__version__"]
