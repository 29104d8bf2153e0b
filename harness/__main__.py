"""``python -m harness`` is the ``tollbench`` command."""

from __future__ import annotations

import sys

from harness.cli.main import main

if __name__ == "__main__":  # not when a process worker (anyio.to_process) imports it as __mp_main__
    sys.exit(main())
