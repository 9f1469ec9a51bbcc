"""``python -m bench [--quick] [--only SECTION ...]``: run the benchmarks and write the report.

The full run (``make bench``) writes ``docs/benchmarks.md`` and ``docs/benchmarks-scaling.png``;
``--quick`` (``make bench-quick``) is a smoke run with fewer repeats and points that writes
to ``out/bench-quick/`` so the committed report is never replaced by smoke numbers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import cost, explorer, fullsize, peers, scaling
from .machine import load_average, machine_info
from .profile import WORKLOADS
from .report import markdown, print_terminal
from .results import Section, Table, Target
from .worker import REPO, run_task

SECTIONS = ("cost", "fullsize", "peers", "scaling", "explorer")
THREADS_NOTE = (
    "Every measured process runs torch with {threads} intra-op thread(s) (`OMP_NUM_THREADS={threads}`). On this "
    "shared 2-core machine torch's default of two OpenMP threads makes the tiny forward swing between 0.1 s and "
    "1.5 s whenever another job holds a core (the threads wait for each other); one thread keeps it near 0.1 s. "
    "The tracer's own work is single-threaded Python either way; on an idle machine with more threads, torch's "
    "share of the time shrinks, so the relative tracing overhead there is somewhat higher than measured here."
)
DEFAULT_CONFIG = "tiny/cogvlm-grounding-generalist"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repeats and points (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"tiny config to measure (default {DEFAULT_CONFIG})")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="Markdown report (default docs/benchmarks.md; out/bench-quick/benchmarks.md with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the tracing workloads even when their targets are met")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch intra-op threads in every measured process (default 1; see THREADS_NOTE)")
    return parser


def _profile_section(targets: Sequence[Target], *, force: bool, config: str, env: dict[str, str],
                     out_dir: Path) -> Section:
    """Section 5: a pyinstrument profile of each workload whose target was missed (all with ``force``)."""
    which = ("Both tracing workloads are profiled (`--profile`), met or not," if force else
             "Each workload whose time target was missed is profiled")
    section = Section("profile", "Profiles of the tracing workloads" if force else "Profiles of missed targets",
                      f"{which} with pyinstrument in a fresh "
                      "process (after a warm-up run). 'Recording code' is the self time of functions in `tracer/` outside "
                      "the CogVLM model (`tracer/cogvlm/`) — what tracing adds and this project can fix; the "
                      "package table says where the rest goes. Wall time under load includes waiting for a CPU.")
    started = time.perf_counter()
    wanted: dict[str, Target | None] = {t.profile: t for t in targets if t.profile and (t.met is False or force)}
    if force:
        for name in ("construction", "runtime"):
            wanted.setdefault(name, None)
    if not wanted:
        section.text.append("Every measured target was met; nothing to profile (run with `--profile` to "
                            "profile the tracing workloads anyway).")
    out_dir.mkdir(parents=True, exist_ok=True)
    for workload, target in wanted.items():
        text_path = out_dir / f"profile-{workload}.txt"
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
            res = run_task("bench.profile:profile_workload", {"workload": workload, "config": config,
                                                              "out_dir": tmp, "text_path": str(text_path)},
                           env=env, timeout=900)
        title = f"{WORKLOADS[workload]}" + (f" — {target.name}: {target.measured}" if target else "")
        if not res.ok:
            section.text.append(f"**{title}**: profiling failed: `{(res.error or '').strip().splitlines()[-1]}`")
            continue
        v = res.value
        section.tables.append(Table(
            f"{title} — recording code (self time, {v['seconds']:.2f} s profiled run)", ("function", "self time", "share"),
            tuple((name, f"{t * 1000:.0f} ms", f"{share:.1%}") for name, t, share in v["ours"]) or
            (("(no samples in tracer/)", "—", "—"),)))
        section.tables.append(Table(
            f"{title} — by package", ("package", "self time", "share"),
            tuple((name, f"{t * 1000:.0f} ms", f"{share:.1%}") for name, t, share in v["packages"]),
            notes=(f"pyinstrument's call tree: `{text_path.relative_to(REPO) if text_path.is_relative_to(REPO) else text_path}`",)))
        enc = v.get("encoding")
        if enc and enc["as written"] > 0:
            section.text.append(
                f"{WORKLOADS[workload]}: writing this run's trace with the tracer's own writers "
                f"(`tracer.export.write_json`, one line per event, and `write_chrome`) takes "
                f"{enc['as written'] * 1000:.0f} ms; one compact `json.dumps` of the same two files' data "
                f"takes {enc['json.dumps'] * 1000:.0f} ms (best of 5, without the profiler).")
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = args.only or list(SECTIONS)
    quick = bool(args.quick)
    output: Path = args.output or (REPO / ("out/bench-quick/benchmarks.md" if quick else "docs/benchmarks.md"))
    output.parent.mkdir(parents=True, exist_ok=True)
    plot = output.parent / "benchmarks-scaling.png"
    # The Makefile names itself (BENCH_COMMAND=make bench); run by hand, the report quotes the call.
    command = os.environ.get("BENCH_COMMAND") or "python -m bench " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))

    machine = machine_info(REPO)
    started = time.perf_counter()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        # Generated tiny checkpoints go to a private cache, made once by the first process.
        env = {"COGTRACE_CACHE": cache, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        for name in chosen:
            print(f"[bench] {name} ...", flush=True)
            if name == "cost":
                sections.append(cost.measure(quick=quick, config=args.config, env=env))
            elif name == "fullsize":
                sections.append(fullsize.measure(quick=quick, env=env))
            elif name == "peers":
                sections.append(peers.measure(quick=quick, config=args.config, env=env))
            elif name == "explorer":
                sections.append(explorer.measure(quick=quick, config=args.config, env=env))
            else:
                sections.append(scaling.measure(quick=quick, config=args.config, env=env, plot_path=plot))
            print_terminal(sections[-1:])
        targets = [t for s in sections for t in s.targets]
        if targets or args.profile:
            print("[bench] profile ...", flush=True)
            sections.append(_profile_section(targets, force=args.profile, config=args.config, env=env,
                                             out_dir=REPO / "out" / "bench-profiles"))
            print_terminal(sections[-1:])
    total = time.perf_counter() - started
    output.write_text(markdown(sections, machine, load_end=load_average(), total_seconds=total, quick=quick,
                               command=command, notes=[THREADS_NOTE.format(threads=args.threads)]),
                      encoding="utf-8")
    print(f"[bench] wrote {output} in {total / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
