"""The built-in provider simulator: a loopback server that the official SDKs cannot tell from the
OpenAI and Anthropic APIs, with seeded model profiles, faults and its own invoice."""

from __future__ import annotations

from harness.sim.faults import FaultConfig
from harness.sim.profiles import ModelProfile, default_sim_models, load_profiles
from harness.sim.server import SimClient, SimProcess, SimServer, serve_forever, start_sim_process

__all__ = [
    "FaultConfig",
    "ModelProfile",
    "SimClient",
    "SimProcess",
    "SimServer",
    "default_sim_models",
    "load_profiles",
    "serve_forever",
    "start_sim_process",
]
