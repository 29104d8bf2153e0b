"""Generate docs/cli.md from every command's --help (a test checks the file is current).

python scripts/gen_cli_docs.py > docs/cli.md
"""

from __future__ import annotations

import click

from harness.cli.main import cli

HEADER = """# CLI reference

Generated from `tollbench ... --help` by `python scripts/gen_cli_docs.py > docs/cli.md`; a test fails when
it is out of date.

Exit codes: 0 done; 1 error; 2 bad usage or configuration (unknown suite or model, no price, no API key,
malformed file); 3 stopped at the budget; 130 interrupted. `--db` also reads `TOLLBENCH_DB` (default
`./runs.db`). Dollar amounts in JSON are decimal strings.
"""


def _walk(cmd: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            out += _walk(cmd.commands[name], [*path, name])
    return out


def render() -> str:
    parts = [HEADER]
    for path, cmd in _walk(cli, ["tollbench"]):
        ctx = click.Context(
            cmd,
            info_name=" ".join(path),
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        )
        parts.append(f"\n## `{' '.join(path)}`\n\n```\n{cmd.get_help(ctx)}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
