"""Run every walkthrough, in order, in one Python process (the whole article in one go).

Each walkthrough is a standalone script; running them one by one costs an ``import sat``
(3–10 s) each. This runner imports SAT once and runs the scripts with ``runpy``, exactly as
``python walkthroughs/0N_*.py`` would, passing on ``--lang`` and ``--no-pause``.

Run:    python walkthroughs/run_all.py [--lang zh] [--no-pause] [--only 01,05]
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _common import LANGS, default_lang

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lang", choices=LANGS, default=default_lang())
    parser.add_argument("--no-pause", action="store_true", help="run straight through without waiting for Enter")
    parser.add_argument("--only", default="", metavar="NN,NN", help="run only these numbers, e.g. 01,05")
    args = parser.parse_args(argv)
    wanted = {n.strip().zfill(2) for n in args.only.split(",") if n.strip()}
    scripts = [p for p in SCRIPTS if not wanted or p.name[:2] in wanted]
    if not scripts:
        parser.error(f"--only {args.only!r}: expected numbers among {', '.join(p.name[:2] for p in SCRIPTS)}")

    failed: list[str] = []
    for script in scripts:
        common = ["--lang", args.lang] + (["--no-pause"] if args.no_pause else [])
        saved_argv = sys.argv
        sys.argv = [str(script), *common]  # what the script's own argparse will read
        start = time.perf_counter()
        code: object = 0
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:  # every script ends with sys.exit(main())
            code = e.code
        finally:
            sys.argv = saved_argv
        status = "ok" if code in (0, None) else f"exit {code}"
        print(f"\n### {script.name}: {status} ({time.perf_counter() - start:.1f} s)\n", flush=True)
        if status != "ok":
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
