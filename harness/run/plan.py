"""Planning a run: resolve models, suites, prices and keys, and list the work units, before a cent is spent.

Everything that can be wrong with a run's configuration is found here and raised as a
:class:`~harness.errors.ConfigError` (exit 2), so nothing is written for a run that cannot start.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PricingMissing
from harness.models import (
    base_url_env,
    dialect_for,
    load_aliases,
    price_provider,
    provider_info,
    require_api_key,
    resolve_model,
)
from harness.pricing.money import MAX_BUDGET_USD
from harness.pricing.table import Price, PriceTable
from harness.redact import check_key_length, strip_url_credentials
from harness.run.cache import CachedAnswer
from harness.run.retry import RetryPolicy
from harness.stats.sampling import seeded_order, stratified_sample
from harness.stats.sequential import CI_METHODS
from harness.suite import Item, JudgedSuite, Suite, batchable
from harness.types import ModelSpec, Prompt

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DONE_STATUSES",
    "MAX_BUDGET_USD",
    "MAX_REPEATS",
    "MAX_UNITS",
    "JudgePlan",
    "ModelPlan",
    "Plan",
    "PriorUnit",
    "RunOptions",
    "Unit",
    "check_base_url",
    "check_budget_usd",
    "check_seconds",
    "check_smallest_call",
    "goes_by_batch",
    "options_from_config",
    "options_to_config",
    "prepare_run",
    "smallest_call_nano",
]

#: AA v2's output cap; every request carries an explicit limit (invariant 1).
DEFAULT_MAX_OUTPUT_TOKENS = 16384

#: Item result statuses that mean "answered and paid for": resume never sends these units again.
DONE_STATUSES = frozenset({"scored", "unusable"})


@dataclass(frozen=True, slots=True)
class RunOptions:
    suites: Sequence[str | Suite]
    """Suite names (or already loaded :class:`~harness.suite.Suite` objects)."""
    models: Sequence[str]
    budget_usd: Decimal
    concurrency: int = 16
    limit: int | None = None
    repeats: int | None = None
    seed: int = 0
    max_output_tokens: int | None = None
    simulated: bool = False
    data: Path | None = None
    suite_options: Mapping[str, str] = field(default_factory=dict)
    prices: Sequence[Path] = ()
    models_file: Path | None = None
    base_url: str | None = None
    attempt_timeout_s: float = 900.0
    stall_timeout_s: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    run_id: str | None = None
    sim_speed: float = 0.02
    sim_seed: int | None = None
    sim_profiles: Path | None = None
    sim_faults: Path | None = None
    target_ci: float | None = None
    """Stop each model and suite once its anytime-valid 95% interval is narrower than +-target_ci."""
    ci_method: str = "betting"
    """The anytime-valid interval ``--target-ci`` stops on (:data:`harness.stats.sequential.CI_METHODS`)."""
    control: str | None = None
    """``--control MODEL``: a cheap model whose answers on every item are a control variate for the
    ``--target-ci`` interval (its run comes first; see :mod:`harness.run.control`)."""
    split: Mapping[str, Decimal] | None = None
    """Budget shares per model (fractions summing to 1); None = equal shares when several models run."""
    sim_url: str | None = None
    """Use the simulator already running at this URL (``tollbench sim serve``) instead of starting one."""
    use_cache: bool = True
    """Look answers up in the response cache before buying them (``--no-cache`` turns lookups off;
    answers are stored either way). See :mod:`harness.run.cache`."""
    judge: str | None = None
    """The LLM judge of judged suites (``hle``): ``PROVIDER/MODEL``; None: the suite's default."""
    pool: str | None = None
    """The budget pool the run also draws from (``tollbench pool create``; see docs/workers.md)."""
    lease_s: float = 60.0
    """How long this worker's claim on a unit lasts without a heartbeat (docs/workers.md)."""
    batch: bool = False
    """``--batch``: eligible units go through the providers' batch APIs (docs/batch.md)."""
    batch_retry: str = "live"
    """What errored or expired batch requests do next: ``live``, ``batch`` (a new batch) or ``none``."""
    batch_deadline_s: float | None = None
    """Cancel the batches still running this many seconds after the session started."""
    batch_finish_live: bool = True
    """After the deadline, finish the requests a batch did not answer live."""
    batch_poll_s: float = 30.0
    """First wait between polls of a batch (then x1.5 up to ``batch_poll_max_s``)."""
    batch_poll_max_s: float = 300.0
    batch_cancel_wait_s: float = 30.0
    """On Ctrl-C: how long to wait for a cancelled batch to end (to settle what it answered)."""
    batch_max_requests: int = 50_000
    """Requests per batch (the provider's own limit if lower)."""


@dataclass(frozen=True, slots=True)
class PriorUnit:
    """What earlier sessions of the same run already did for one unit (see :mod:`harness.run.resume`)."""

    status: str | None
    """The unit's item result status, None when it has none."""
    correct: bool | None = None
    cost_nano: int = 0
    """What every earlier attempt at the unit cost."""
    attempts: int = 0
    answer: CachedAnswer | None = None
    """An answer the run bought but never recorded (re-scored, never bought again)."""

    @property
    def done(self) -> bool:
        """The unit has a usable answer (scored or unusable): it was paid for and is never re-sent."""
        return self.status in DONE_STATUSES


@dataclass(frozen=True, slots=True)
class Unit:
    """One (model, suite, item, repeat) to answer."""

    model: str
    suite: str
    item: Item
    repeat: int


@dataclass
class ModelPlan:
    spec: ModelSpec
    price: Price
    api_key: str
    max_output_tokens: int
    units: list[Unit]


@dataclass
class JudgePlan:
    """The judge of a run with judged suites: its model, price and key (calls of role ``judge``)."""

    spec: ModelSpec
    price: Price
    api_key: str
    max_output_tokens: int = 4096


@dataclass
class Plan:
    """Everything resolved and validated before a cent is spent."""

    options: RunOptions
    suites: dict[str, Suite]
    models: dict[str, ModelPlan]
    price_table: PriceTable
    judge: JudgePlan | None = None
    control: str | None = None
    """The control model's resolved name (``--control``), None without one."""
    controls: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Per suite: the control model's score of every item (None: no usable answer), filled by the
    session from the control run before the runner starts."""
    control_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per suite: the control run used (``run_id``, ``spent_nano``, ``reused``)."""
    _prompts: dict[tuple[str, str, int, int], Prompt] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def prompt(self, unit: Unit) -> Prompt:
        """``unit``'s prompt, rendered once (the checks before the run, the forecast and the runner
        all read it; rendering is deterministic in the item, the repeat and ``--seed``)."""
        key = (unit.suite, unit.item.id, unit.repeat, self.options.seed)
        got = self._prompts.get(key)
        if got is None:
            got = self._prompts[key] = self.suites[unit.suite].render(
                unit.item, unit.repeat, self.options.seed
            )
        return got

    @property
    def total_units(self) -> int:
        return sum(len(m.units) for m in self.models.values())


#: At most this many repeats per item (``--repeats``), and this many work units (models x items x
#: repeats) per run: every unit is listed in memory before the run starts.
MAX_REPEATS = 10_000
MAX_UNITS = 2_000_000


def check_budget_usd(value: Decimal, flag: str = "--budget") -> None:
    """Refuse a budget that is negative, NaN, infinite or above :data:`MAX_BUDGET_USD`.

    Raises:
        ConfigError: naming ``flag``.
    """
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{flag} takes a dollar amount of 0 or more, got {value}")
    if value > MAX_BUDGET_USD:
        raise ConfigError(
            f"{flag} {value} is more than tollbench can meter; the largest budget is $1,000,000,000"
        )


def check_seconds(value: float, flag: str) -> None:
    """Refuse a timeout that is zero, negative, NaN or infinite.

    Raises:
        ConfigError: naming ``flag``.
    """
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{flag} takes a number of seconds above 0, got {value}")


def check_base_url(url: str, where: str) -> None:
    """Refuse a base URL that is not an absolute ``http(s)://host`` URL.

    Raises:
        ConfigError: naming ``where`` (``--base-url``, ``OPENAI_BASE_URL``, an alias) and the URL
            without its credentials.
    """
    from urllib.parse import urlsplit

    from harness.redact import strip_url_credentials

    shown = strip_url_credentials(url)
    try:
        parts = urlsplit(url.strip())
        _ = parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        raise ConfigError(f"{where} must be an http:// or https:// URL with a host, got {shown!r}")


def prepare_run(options: RunOptions, *, env: Mapping[str, str] | None = None) -> Plan:
    """Resolve models, suites, prices and keys; raise :class:`ConfigError` (exit 2) on anything missing.

    Nothing is written and nothing is spent here.
    """
    check_budget_usd(options.budget_usd)
    check_seconds(options.attempt_timeout_s, "--attempt-timeout")
    check_seconds(options.stall_timeout_s, "--stall-timeout")
    if options.repeats is not None and options.repeats > MAX_REPEATS:
        raise ConfigError(f"--repeats must be at most {MAX_REPEATS:,}, got {options.repeats:,}")
    if options.base_url is not None:
        check_base_url(options.base_url, "--base-url")
    if options.simulated:
        _check_simulator_files(options)
    if options.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if options.limit is not None and options.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if options.repeats is not None and options.repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    if options.target_ci is not None and not 0 < options.target_ci < 0.5:
        raise ConfigError("--target-ci takes a half-width between 0 and 0.5, e.g. 0.02")
    if options.ci_method not in CI_METHODS:
        raise ConfigError(f"--ci-method takes one of {', '.join(CI_METHODS)}, got {options.ci_method!r}")
    if options.control is not None and options.target_ci is None:
        raise ConfigError("--control needs --target-ci (the control variate narrows that interval)")
    if options.batch and options.target_ci is not None:
        raise ConfigError("--batch buys every unit at once; --target-ci stops one answer at a time: use one")
    if options.batch_retry not in ("live", "batch", "none"):
        raise ConfigError(f"--batch-retry takes live, batch or none, got {options.batch_retry!r}")
    if options.max_output_tokens is not None and options.max_output_tokens < 1:
        raise ConfigError("--max-output-tokens must be at least 1")
    if not options.suites:
        raise ConfigError("name at least one suite (see `tollbench suites`)")
    if not options.models:
        raise ConfigError("name at least one model with -m PROVIDER/MODEL")

    aliases = load_aliases(options.models_file)
    specs: dict[str, ModelSpec] = {}
    for name in options.models:
        spec = resolve_model(name, aliases=aliases, base_url=options.base_url)
        if options.simulated:  # the simulator plays the provider's own API, wherever a URL pointed
            spec = replace(spec, dialect=dialect_for(spec.provider, None))
        specs[spec.name] = spec
    control: str | None = None
    if options.control == "history":  # item difficulty from earlier runs (harness.run.control)
        control = "history"
    elif options.control is not None:
        control = resolve_model(options.control, aliases=aliases, base_url=options.base_url).name
    if options.control is not None:
        if control in specs:
            raise ConfigError(f"--control {options.control}: the control must not be a model of the run")
        if len(specs) != 1:
            raise ConfigError("--control takes a run of one model (the expensive one)")

    suites: dict[str, Suite] = {}
    for sname in options.suites:
        if isinstance(sname, str):
            from suites import get_suite

            suite = get_suite(sname, data=options.data, options=options.suite_options)
        else:
            suite = sname
        if suite.name in suites:
            raise ConfigError(f"suite {suite.name} named twice")
        suites[suite.name] = suite

    table = PriceTable.load(options.prices)
    judge = _judge_plan(options, suites, table, aliases, env)
    missing: list[str] = []
    prices: dict[str, Price] = {}
    for spec in specs.values():
        pp = price_provider(spec.provider)
        if not table.has(pp, spec.model):
            missing.append(f"{pp}/{spec.model}")
        else:
            prices[spec.name] = table.lookup(pp, spec.model)
    if missing:
        # PricingMissing from lookup names one model; name them all at once.
        local = any(m.startswith("local/") for m in missing)
        raise PricingMissing(
            f"No price for {', '.join(missing)}. Add one with --prices FILE (see docs/pricing.md"
            + (
                '; a local server you do not pay for per token takes a row with provider = "local" '
                'and input = "0", output = "0"'
                if local
                else ""
            )
            + ") or to ~/.config/tollbench/prices.toml."
        )

    keys: dict[str, str] = {}
    environ = os.environ if env is None else env
    for spec in specs.values():
        if spec.base_url is not None and spec.base_url != options.base_url:
            check_base_url(spec.base_url, f"{spec.name}: base_url")
        if options.simulated:
            keys[spec.name] = "sim-key-not-secret"
            continue
        keys[spec.name] = require_api_key(spec.provider, env)
        info = provider_info(spec.provider)
        if info.key_required:
            refusal = check_key_length(keys[spec.name], info.api_key_env)
            if refusal:
                raise ConfigError(refusal)
        url_var = base_url_env(spec.provider)
        env_url = environ.get(url_var, "").strip()
        if env_url and spec.base_url is None and not options.base_url:
            check_base_url(env_url, url_var)
            # An SDK-level override (OPENAI_BASE_URL) pointing at another server changes the dialect.
            dialect = dialect_for(spec.provider, env_url)
            if dialect != spec.dialect:
                specs[spec.name] = spec = replace(spec, dialect=dialect)

    for suite in suites.values():
        repeats = options.repeats or suite.default_repeats
        if repeats > MAX_REPEATS:
            raise ConfigError(f"suite {suite.name}: repeats must be at most {MAX_REPEATS:,}, got {repeats:,}")
    n_units = len(specs) * sum(
        min(len(s.items), options.limit or len(s.items)) * (options.repeats or s.default_repeats)
        for s in suites.values()
    )
    if n_units > MAX_UNITS:
        raise ConfigError(
            f"the run would have {n_units:,} calls to make (models x items x repeats), more than the "
            f"{MAX_UNITS:,} one run can plan; lower --repeats or --limit, or split the run"
        )

    models: dict[str, ModelPlan] = {}
    for spec in specs.values():
        max_out = options.max_output_tokens or spec.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        if spec.thinking_budget is not None and spec.thinking_budget >= max_out:
            raise ConfigError(
                f"{spec.name}: thinking budget {spec.thinking_budget} must be below the output limit "
                f"{max_out}; raise --max-output-tokens"
            )
        units: list[Unit] = []
        for suite in suites.values():
            items = list(suite.items)
            if options.limit is not None:
                # a seeded, stratified sample, already in a random stratified order
                items = stratified_sample(items, options.limit, options.seed)
            elif options.target_ci is not None:
                # sequential sampling draws items in a random, stratified order (repeats stay together)
                items = seeded_order(items, options.seed)
            repeats = options.repeats or suite.default_repeats
            for item in items:
                for r in range(repeats):
                    units.append(Unit(spec.name, suite.name, item, r))
        _check_images(spec, suites, units)
        models[spec.name] = ModelPlan(spec, prices[spec.name], keys[spec.name], max_out, units)
    return Plan(options, suites, models, table, judge, control=control)


def _check_images(spec: ModelSpec, suites: Mapping[str, Suite], units: list[Unit]) -> None:
    """Refuse a model that takes no images for a suite's image items (HLE with ``images=true``):
    sent without its image, an item is a different question.

    Raises:
        ConfigError: naming the model, the suite, how many image items and the fixes.
    """
    if spec.image_rule is not None:
        return
    for suite in suites.values():
        ids: frozenset[str] = getattr(suite, "image_item_ids", frozenset())
        n = sum(1 for u in units if u.suite == suite.name and u.item.id in ids) if ids else 0
        if n:
            raise ConfigError(
                f"{spec.name} takes no images (tollbench's model registry), but {n} of {suite.name}'s "
                "calls in this run carry an image: drop --suite-option images=true for the text-only "
                "items, run a model that takes images, or declare image_tokens = N (one image's most "
                "input tokens) in the model's alias (docs/providers.md)"
            )


def smallest_call_nano(plan: Plan, model: str) -> int | None:
    """The smallest worst-case reservation among ``model``'s units (None when it has none): what
    its cheapest possible call must reserve before it is sent (docs/design.md invariant 1)."""
    from harness.pricing.money import usd_to_nano
    from harness.types import input_tokens_upper_bound

    mp = plan.models[model]
    smallest: int | None = None
    priced: set[tuple[str, int]] = set()  # (suite, input bound): the worst case is priced once each
    batch = {name: goes_by_batch(plan, mp.spec, suite) for name, suite in plan.suites.items()}
    for unit in mp.units:
        bound = input_tokens_upper_bound(plan.prompt(unit).messages, mp.spec.image_rule)
        if (unit.suite, bound) in priced:
            continue
        priced.add((unit.suite, bound))
        nano = usd_to_nano(mp.price.worst_case(bound, mp.max_output_tokens, batch=batch[unit.suite]))
        if smallest is None or nano < smallest:
            smallest = nano
    return smallest


def goes_by_batch(plan: Plan, spec: ModelSpec, suite: Suite) -> bool:
    """Whether ``run --batch`` sends ``spec``'s units of ``suite`` through a batch API (and reserves them
    at the batch price): the suite is single-turn (:func:`harness.suite.batchable`) and the model is on
    OpenAI's own Chat Completions, Anthropic Messages or Gemini (``adapters.batch.batch_client``)."""
    if not plan.options.batch or not batchable(suite):
        return False
    if spec.api in ("messages", "gemini"):
        return True
    return spec.api == "chat" and spec.provider == "openai" and spec.dialect == "openai"


def check_smallest_call(plan: Plan) -> None:
    """Refuse, before anything is written, a run in which some model can never make a single call:
    its cheapest call's worst case (the whole output limit at the output price) is above the budget.
    ``tollbench run`` calls it after :func:`prepare_run` (``estimate`` plans with no budget).

    Raises:
        ConfigError: naming the model, the smallest call's cost, the budget and the fix.
    """
    from harness.pricing.money import format_usd, usd_to_nano

    budget = usd_to_nano(plan.options.budget_usd)
    for name in plan.models:
        smallest = smallest_call_nano(plan, name)
        if smallest is not None and smallest > budget:
            raise ConfigError(
                f"the smallest call of {name} costs {format_usd(smallest, 6)} at worst "
                f"({plan.models[name].max_output_tokens:,} output tokens reserved), more than the budget "
                f"{format_usd(budget, 6)}; lower --max-output-tokens or raise --budget"
            )


#: The judge when a judged suite names none (suites.hle.DEFAULT_JUDGE, the cost study's choice).
DEFAULT_JUDGE = "openai/gpt-4o-2024-08-06"


def _judge_plan(
    options: RunOptions,
    suites: Mapping[str, Suite],
    table: PriceTable,
    aliases: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None,
) -> JudgePlan | None:
    """The judge of the run's judged suites (``--judge``, else :data:`DEFAULT_JUDGE`): an OpenAI chat
    model (structured output) at temperature 0 unless it is a reasoning model; None without one.

    Raises:
        ConfigError: ``--judge`` without a judged suite, a judge of another provider, no price.
    """
    judged = [s.name for s in suites.values() if isinstance(s, JudgedSuite)]
    if not judged:
        if options.judge:
            raise ConfigError("--judge is only for judged suites (hle); none of the suites is judged")
        return None
    spec = resolve_model(options.judge or DEFAULT_JUDGE, aliases=aliases, base_url=options.base_url)
    if options.simulated:  # the simulator plays the provider's own API
        spec = replace(spec, dialect=dialect_for(spec.provider, None))
    if spec.provider != "openai":
        raise ConfigError(
            f"--judge {spec.name}: the judge answers in a JSON schema (structured output); use an "
            "openai/ model (or an OpenAI-compatible server with --base-url)"
        )
    reasoning = bool(re.match(r"o\d|gpt-5", spec.model))
    spec = replace(spec, api="chat", temperature=None if reasoning else 0.0)
    if not table.has(spec.provider, spec.model):
        raise PricingMissing(
            f"No price for the judge {spec.provider}/{spec.model}. Add one with --prices FILE "
            "(see docs/pricing.md), or pick another --judge."
        )
    key = "sim-key-not-secret" if options.simulated else require_api_key(spec.provider, env)
    return JudgePlan(spec, table.lookup(price_provider(spec.provider), spec.model), key)


def _check_simulator_files(options: RunOptions) -> None:
    """Load ``--sim-profiles`` and ``--sim-faults`` and check ``--sim-speed`` now, so a bad file is one
    line and exit 2 before a run row exists (the simulator process would fail after it)."""
    from harness.sim.faults import FaultConfig
    from harness.sim.profiles import load_profiles
    from harness.sim.server import check_speed

    check_speed(options.sim_speed)
    try:
        if options.sim_profiles is not None:
            load_profiles(Path(options.sim_profiles))
        if options.sim_faults is not None:
            FaultConfig.load(Path(options.sim_faults))
    except ValueError as exc:
        raise ConfigError(f"{exc}; fix the file (see docs/simulator.md)") from None


def options_to_config(options: RunOptions) -> dict[str, Any]:
    """The options as JSON, stored in ``runs.config["options"]`` so ``resume`` can re-plan the run.

    Suites given as objects (tests) are stored by name; paths as absolute strings (so ``resume`` and
    ``rescore`` work from another directory); the API key never (keys are read from the environment
    again).
    """
    retry = options.retry
    return {
        "suites": [_suite_ref(s) for s in options.suites],
        "models": list(options.models),
        "budget_usd": str(options.budget_usd),
        "concurrency": options.concurrency,
        "limit": options.limit,
        "repeats": options.repeats,
        "seed": options.seed,
        "max_output_tokens": options.max_output_tokens,
        "simulated": options.simulated,
        "data": _abs(options.data),
        "suite_options": dict(options.suite_options),
        "prices": [_abs(p) for p in options.prices],
        "models_file": _abs(options.models_file),
        "base_url": strip_url_credentials(options.base_url) if options.base_url else None,
        "attempt_timeout_s": options.attempt_timeout_s,
        "stall_timeout_s": options.stall_timeout_s,
        "retry": {
            "max_attempts": retry.max_attempts,
            "max_elapsed_s": retry.max_elapsed_s,
            "initial_wait_s": retry.initial_wait_s,
            "max_wait_s": retry.max_wait_s,
            "max_retry_after_s": retry.max_retry_after_s,
        },
        "sim_speed": options.sim_speed,
        "sim_seed": options.sim_seed,
        "sim_profiles": _abs(options.sim_profiles),
        "sim_faults": _abs(options.sim_faults),
        "target_ci": options.target_ci,
        "ci_method": options.ci_method if options.target_ci is not None else None,
        "control": options.control,
        "split": {k: str(v) for k, v in options.split.items()} if options.split else None,
        "use_cache": options.use_cache,
        "judge": options.judge,
        "pool": options.pool,
        **_batch_config(options),
    }


def _batch_config(options: RunOptions) -> dict[str, Any]:
    """The ``--batch`` options (only for a batch run, so other runs' stored options are unchanged)."""
    if not options.batch:
        return {}
    return {
        "batch": {
            "retry": options.batch_retry,
            "deadline_s": options.batch_deadline_s,
            "finish_live": options.batch_finish_live,
            "poll_s": options.batch_poll_s,
            "poll_max_s": options.batch_poll_max_s,
            "cancel_wait_s": options.batch_cancel_wait_s,
            "max_requests": options.batch_max_requests,
        }
    }


def _batch_values(stored: Mapping[str, Any]) -> dict[str, Any]:
    b = stored.get("batch")
    if not isinstance(b, Mapping):
        return {}
    return {
        "batch": True,
        "batch_retry": str(b.get("retry", "live")),
        "batch_deadline_s": None,  # a deadline belongs to the session that set it
        "batch_finish_live": bool(b.get("finish_live", True)),
        "batch_poll_s": float(b.get("poll_s", _default("batch_poll_s"))),
        "batch_poll_max_s": float(b.get("poll_max_s", _default("batch_poll_max_s"))),
        "batch_cancel_wait_s": float(b.get("cancel_wait_s", _default("batch_cancel_wait_s"))),
        "batch_max_requests": int(b.get("max_requests", _default("batch_max_requests"))),
    }


def _abs(path: str | Path | None) -> str | None:
    """A path as an absolute string (None stays None)."""
    return str(Path(path).expanduser().absolute()) if path else None


def _suite_ref(suite: str | Suite) -> str:
    """How a suite is stored: its name, or the absolute path of a JSONL file given as a path."""
    if not isinstance(suite, str):
        return suite.name
    if suite.strip().lower().endswith((".jsonl", ".ndjson")) and Path(suite.strip()).expanduser().exists():
        return str(Path(suite.strip()).expanduser().absolute())
    return suite


def _with_env_credentials(stored: str | None) -> str | None:
    """A stored base URL (kept without credentials) with the credentials put back from
    ``OPENAI_BASE_URL`` when that variable names the same endpoint with them, so ``resume`` of a run
    against a server that needs ``user:pass@`` or ``?api_key=`` can still send."""
    if not stored:
        return stored
    env = os.environ.get("OPENAI_BASE_URL", "").strip()
    if env and env != stored and strip_url_credentials(env) == stored:
        return env
    return stored


def _default(name: str) -> Any:
    """The default of a :class:`RunOptions` field (defined once, on the dataclass)."""
    return RunOptions.__dataclass_fields__[name].default


def options_from_config(
    stored: Mapping[str, Any], *, suites: Sequence[str | Suite] | None = None, **overrides: Any
) -> RunOptions:
    """Rebuild :class:`RunOptions` from :func:`options_to_config` output (``overrides`` win).

    Args:
        stored: ``runs.config["options"]``.
        suites: Suite objects to use instead of the stored names (for suites that are not registered).
        overrides: Any :class:`RunOptions` field (``use_cache``, ``sim_url``, ``concurrency``, ...).

    Raises:
        ConfigError: The stored options are not a mapping this version understands.
    """
    if not isinstance(stored, Mapping) or "models" not in stored:
        raise ConfigError("the run has no stored options (it was created by an older tollbench)")

    def path(key: str) -> Path | None:
        value = stored.get(key)
        return Path(value) if value else None

    retry = dict(stored.get("retry") or {})
    split = stored.get("split")
    values: dict[str, Any] = {
        "suites": list(suites) if suites is not None else list(stored["suites"]),
        "models": list(stored["models"]),
        "budget_usd": Decimal(str(stored.get("budget_usd", "0"))),
        "concurrency": int(stored.get("concurrency", _default("concurrency"))),
        "limit": stored.get("limit"),
        "repeats": stored.get("repeats"),
        "seed": int(stored.get("seed", _default("seed"))),
        "max_output_tokens": stored.get("max_output_tokens"),
        "simulated": bool(stored.get("simulated", False)),
        "data": path("data"),
        "suite_options": dict(stored.get("suite_options") or {}),
        "prices": tuple(Path(p) for p in stored.get("prices") or ()),
        "models_file": path("models_file"),
        "base_url": _with_env_credentials(stored.get("base_url")),
        "attempt_timeout_s": float(stored.get("attempt_timeout_s", _default("attempt_timeout_s"))),
        "stall_timeout_s": float(stored.get("stall_timeout_s", _default("stall_timeout_s"))),
        "retry": RetryPolicy(**{k: v for k, v in retry.items() if k in RetryPolicy.__dataclass_fields__}),
        "sim_speed": float(stored.get("sim_speed", _default("sim_speed"))),
        "sim_seed": stored.get("sim_seed"),
        "sim_profiles": path("sim_profiles"),
        "sim_faults": path("sim_faults"),
        "target_ci": stored.get("target_ci"),
        # runs stored before --ci-method existed stopped on the empirical-Bernstein sequence
        "ci_method": str(stored.get("ci_method") or ("eb" if stored.get("target_ci") else "betting")),
        "control": stored.get("control"),
        "split": {k: Decimal(v) for k, v in split.items()} if split else None,
        "use_cache": bool(stored.get("use_cache", _default("use_cache"))),
        "judge": stored.get("judge"),
        "pool": stored.get("pool"),
        **_batch_values(stored),
    }
    values.update(overrides)
    return RunOptions(**values)
