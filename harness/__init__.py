"""tollbench: an async evaluation harness that meters real spend."""

from __future__ import annotations

__version__ = "0.1.0"
