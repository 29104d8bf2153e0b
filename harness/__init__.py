"""tollbench: an async evaluation harness that meters real spend.

The library API (the CLI is built on it)::

    import anyio
    from decimal import Decimal
    from harness import RunOptions, Store, prepare_run, run_plan

    plan = prepare_run(RunOptions(suites=["demo"], models=["openai/o4-mini"], budget_usd=Decimal("1"),
                                  simulated=True))
    with Store.open("runs.db") as store:
        outcome = anyio.run(run_plan, plan, store)   # RunOutcome(run_id, status, exit_code, errors)

``forecast_plan(plan, store)`` says what a plan will cost before anything is spent; ``Store`` answers
what past runs cost. Names are imported on first use, so ``import harness`` stays cheap (the
simulator's child process and the adapters import parts of it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # running
    "RunOptions": "harness.run.plan",
    "Plan": "harness.run.plan",
    "prepare_run": "harness.run.plan",
    "run_plan": "harness.run.session",
    "RunOutcome": "harness.run.session",
    "resume_run": "harness.run.resume",
    # forecasting
    "forecast_plan": "harness.forecast.estimate",
    "check_budget": "harness.forecast.estimate",
    # the database
    "Store": "harness.store.engine",
    # prices
    "PriceTable": "harness.pricing.table",
    "Price": "harness.pricing.table",
    # suites and what they produce
    "Suite": "harness.suite",
    "Item": "harness.suite",
    "Score": "harness.suite",
    # types
    "Usage": "harness.types",
    "Completion": "harness.types",
    "Request": "harness.types",
    "Prompt": "harness.types",
    "Message": "harness.types",
    "ModelSpec": "harness.types",
    # errors
    "HarnessError": "harness.errors",
    "ConfigError": "harness.errors",
    "BudgetExhausted": "harness.errors",
    "ShareExhausted": "harness.errors",
    "ProviderError": "harness.errors",
    "StorageError": "harness.errors",
}

__all__ = [
    "__version__",
    "BudgetExhausted",
    "Completion",
    "ConfigError",
    "HarnessError",
    "Item",
    "Message",
    "ModelSpec",
    "Plan",
    "Price",
    "PriceTable",
    "Prompt",
    "ProviderError",
    "Request",
    "RunOptions",
    "RunOutcome",
    "Score",
    "ShareExhausted",
    "StorageError",
    "Store",
    "Suite",
    "Usage",
    "check_budget",
    "forecast_plan",
    "prepare_run",
    "resume_run",
    "run_plan",
]

if TYPE_CHECKING:
    from harness.errors import (
        BudgetExhausted,
        ConfigError,
        HarnessError,
        ProviderError,
        ShareExhausted,
        StorageError,
    )
    from harness.forecast.estimate import check_budget, forecast_plan
    from harness.pricing.table import Price, PriceTable
    from harness.run.plan import Plan, RunOptions, prepare_run
    from harness.run.resume import resume_run
    from harness.run.session import RunOutcome
    from harness.run.session import run as run_plan
    from harness.store.engine import Store
    from harness.suite import Item, Score, Suite
    from harness.types import Completion, Message, ModelSpec, Prompt, Request, Usage


#: Exports whose name in the defining module differs (``harness.run`` is the sub-package).
_RENAMED = {"run_plan": "run"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
