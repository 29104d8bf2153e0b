"""Benchmark suites: one module per benchmark, found by name with :func:`get_suite`.

=================  ========================================================
``demo``           built-in arithmetic and multiple choice (offline)
``math500``        HuggingFaceH4/MATH-500
``aime2024``       Maxwell-Jia/AIME_2024
``aime2025``       math-ai/aime25
``mmlu-pro``       TIGER-Lab/MMLU-Pro
``gpqa-diamond``   Idavidrein/gpqa (gated)
``hle``            cais/hle (gated; scored by an LLM judge, ``--judge``)
``livecodebench``  livecodebench/code_generation_lite (code run in the sandbox; options)
``scicode``        SciCode (sub-steps in sequence, code run in the sandbox; ``--data``, options)
``jsonl``          your own JSONL file (``data=``; a ``.jsonl`` path as the name works too);
                   reported as ``jsonl:<file stem>``
=================  ========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from harness.errors import ConfigError, UnknownSuite
from harness.suite import Suite

from . import aime, demo, gpqa, hle, jsonl, livecodebench, math500, mmlu_pro, scicode
from .base import SuiteInfo

__all__ = ["SuiteInfo", "get_suite", "list_suites", "suite_names"]

_Loader = Callable[[Path | None, bool | None], Suite]

_LOADERS: dict[str, _Loader] = {
    "math500": lambda data, offline: math500.load(data=data, offline=offline),
    "aime2024": lambda data, offline: aime.load(2024, data=data, offline=offline),
    "aime2025": lambda data, offline: aime.load(2025, data=data, offline=offline),
    "mmlu-pro": lambda data, offline: mmlu_pro.load(data=data, offline=offline),
    "gpqa-diamond": lambda data, offline: gpqa.load(data=data, offline=offline),
}

_INFOS: tuple[SuiteInfo, ...] = (
    demo.INFO,
    math500.INFO,
    aime.INFO_2024,
    aime.INFO_2025,
    mmlu_pro.INFO,
    gpqa.INFO,
    hle.INFO,
    livecodebench.INFO,
    scicode.INFO,
    jsonl.INFO,
)

#: Other spellings users type.
_ALIASES = {
    "math-500": "math500",
    "aime24": "aime2024",
    "aime-2024": "aime2024",
    "aime25": "aime2025",
    "aime-2025": "aime2025",
    "mmlu_pro": "mmlu-pro",
    "mmlupro": "mmlu-pro",
    "gpqa": "gpqa-diamond",
    "gpqa_diamond": "gpqa-diamond",
    "lcb": "livecodebench",
    "humanitys-last-exam": "hle",
    "live-code-bench": "livecodebench",
    "sci-code": "scicode",
}

#: Suites that take options: name -> loader(data, offline, options).
_OPTION_LOADERS: dict[str, Callable[[Path | None, bool | None, Mapping[str, str]], Suite]] = {
    "livecodebench": lambda data, offline, options: livecodebench.load(
        data=data, offline=offline, options=options
    ),
    "hle": lambda data, offline, options: hle.load(data=data, offline=offline, options=options),
    "scicode": lambda data, offline, options: scicode.load(data=data, offline=offline, options=options),
}


def suite_names() -> list[str]:
    """The registered suite names, in listing order."""
    return [info.name for info in _INFOS]


def list_suites() -> list[SuiteInfo]:
    """What ``tollbench suites`` shows: name, published item count, source, license, access note
    and default repeats of every suite."""
    return list(_INFOS)


def get_suite(
    name: str,
    *,
    data: Path | None = None,
    offline: bool | None = None,
    options: Mapping[str, str] | None = None,
) -> Suite:
    """Load a suite by name.

    Args:
        name: A name from :func:`suite_names` (case-insensitive; a few aliases such as ``gpqa``
            work), or a path to a ``.jsonl`` file (the ``jsonl`` suite on that file).
        data: A local data file (parquet, JSONL or CSV in the dataset's schema); wins over the hub.
        offline: True: never touch the network (the huggingface_hub cache still counts); None:
            offline when ``HF_HUB_OFFLINE=1`` or when the hub cannot be reached.
        options: Suite options (``jsonl`` and ``livecodebench`` take some; see their modules).

    Raises:
        UnknownSuite: no such suite (the message lists the names).
        DataError: the data is missing, gated or malformed (the message says what to do).
        ConfigError: options given to a suite that takes none, or bad ``jsonl`` options.
    """
    key = name.strip()
    if key.lower().endswith((".jsonl", ".ndjson")) and (data is None or Path(key) == data):
        return jsonl.load(Path(key), options, name=f"jsonl:{Path(key).stem}")
    key = _ALIASES.get(key.lower(), key.lower())
    if key == "jsonl":
        if data is None:
            raise ConfigError("the jsonl suite needs its file: pass --data FILE.jsonl")
        return jsonl.load(data, options, name=f"jsonl:{Path(data).stem}")
    if key in _OPTION_LOADERS:
        return _OPTION_LOADERS[key](data, offline, options or {})
    if key not in _LOADERS and key != "demo":
        raise UnknownSuite(f"unknown suite {name!r}; known suites: {', '.join(suite_names())}")
    if options:
        raise ConfigError(f"suite {key} takes no options (got {', '.join(sorted(options))})")
    if key == "demo":
        if data is not None:
            raise ConfigError("the demo suite is built in and takes no --data")
        return demo.load()
    return _LOADERS[key](data, offline)
