"""Measure a suite's offline statistics (``suites/data/stats/<suite>.toml``) from its data.

    python scripts/suite_stats.py scicode --data eval/data/ > suites/data/stats/scicode.toml
    python scripts/suite_stats.py math500                  # the pinned hub file

Prints the TOML ``tollbench estimate`` reads when the suite's data is not downloaded (suites/presets.py):
items and calls per repeat, the suite's repeats, its answer type and the prompt-token quantiles of
every call, counted as the forecast counts them (a stepped suite's steps without the model's code).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from harness.forecast.estimate import estimate_input_tokens
from harness.suite import SteppedSuite
from suites import get_suite


def main() -> None:
    fmt_class = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt_class)
    parser.add_argument("suite")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    options = dict(o.split("=", 1) for o in args.option)
    if args.suite == "scicode":
        import suites.scicode as sc

        suite = sc.load(data=args.data, options={"unsafe_sandbox": "true", **options}, need_targets=False)
    else:
        suite = get_suite(args.suite, data=args.data, options=options or None)
    tokens: list[int] = []
    formats: dict[str, int] = {}
    for item in suite.items:
        prompt = suite.render(item, 0, 0)
        calls = suite.key_prompts(prompt) if isinstance(suite, SteppedSuite) else [prompt]
        for c in calls:
            tokens.append(estimate_input_tokens(c.messages))
            formats[c.answer_format] = formats.get(c.answer_format, 0) + 1
    q = statistics.quantiles(tokens, n=10, method="inclusive") if len(tokens) > 1 else tokens * 9
    fmt = max(formats, key=lambda f: formats[f])
    print(f"# Offline statistics of the {suite.name} suite, measured by scripts/suite_stats.py")
    print(f"# from {getattr(suite, 'source', args.data)}.")
    print(f"items = {len(suite.items)}\ncalls = {len(tokens)}\nrepeats = {suite.default_repeats}")
    print(f'answer_format = "{fmt}"\nmeasured = true\nsource = "scripts/suite_stats.py"\n')
    print("[prompt_tokens]")
    print(f"p10 = {round(q[0])}\np50 = {round(q[4])}\np90 = {round(q[8])}\nmax = {max(tokens)}")


if __name__ == "__main__":
    main()
