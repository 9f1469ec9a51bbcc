"""Section 1: what tracing costs on the tiny pipeline (load + one chat turn).

See :data:`METHOD` for how the modes are interleaved and why.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from .results import Section, Table, Target, seconds
from .stats import summarise
from .worker import run_task

__all__ = ["measure", "session"]

NEW_TOKENS = 16  # tokens the chat turn may generate (it stops earlier at an end token)

METHOD = (
    "Why this method: the pipeline takes well under a second while starting Python and importing torch, "
    "deepspeed and SAT takes 5–7 s, so a fresh process per repeat would spend nearly all its time importing "
    "and give few samples. Each *session* is instead one fresh process that imports once, runs every mode "
    "once as a warm-up (lazy imports, the generated tiny checkpoint, allocator growth — excluded for all modes "
    "alike), then runs rounds; a round runs each mode once, in an order rotated from round to round (ABC, BCA, "
    "CAB), so neither drift on the shared machine nor position favours a mode. A mode's ratio is taken within "
    "a round and summarised by the median over all rounds of all sessions; several sessions add process-level "
    "variation. The tracer removes every patch and hook when its block exits (tested in its own suite), so an "
    "untraced run after a traced one runs the original code."
)


def _one_run(mode: str, config: str, new_tokens: int, out_dir: Path) -> dict[str, Any]:
    from .tracing import trace_stats, tracing
    from .workload import chat_turn, load_pipeline

    gc.collect()
    cpu_start = time.process_time()
    start = time.perf_counter()
    with tracing(mode, out_dir if mode != "untraced" else None):
        p = load_pipeline(config)
        built = time.perf_counter()
        ids = chat_turn(p, new_tokens)
        chatted = time.perf_counter()
    end = time.perf_counter()
    run: dict[str, Any] = {"mode": mode, "total": end - start, "cpu": time.process_time() - cpu_start, "build": built - start, "chat": chatted - built,
                           "write": end - chatted, "ids": ids}
    if mode != "untraced":
        run["trace"] = trace_stats(out_dir)
    return run


def session(config: str, rounds: int, new_tokens: int, out_dir: str, first: int = 0) -> dict[str, Any]:
    """Worker task: warm up each mode, then ``rounds`` interleaved rounds (rotation starts at ``first``)."""
    from .tracing import MODES

    root = Path(out_dir)
    warmup = [_one_run(mode, config, new_tokens, root / "warmup" / mode) for mode in MODES]
    runs = []
    for r in range(rounds):
        k = (first + r) % len(MODES)
        for mode in MODES[k:] + MODES[:k]:
            run = _one_run(mode, config, new_tokens, root / f"round{r}" / mode)
            run["round"] = r
            runs.append(run)
    return {"warmup": warmup, "runs": runs}


def _ratios(rounds: list[list[dict[str, Any]]], mode: str, key: str) -> list[float]:
    out = []
    for runs in rounds:
        by_mode = {r["mode"]: r for r in runs}
        if mode in by_mode and "untraced" in by_mode and by_mode["untraced"][key] > 0:
            out.append(by_mode[mode][key] / by_mode["untraced"][key])
    return out


def measure(*, quick: bool, config: str, env: dict[str, str]) -> Section:
    """Run the sessions and summarise them as section 1 of the report."""
    sessions, rounds = (1, 3) if quick else (3, 5)
    section = Section("cost", "Tracing cost on the tiny pipeline",
                      f"Load `{config}` through `from_pretrained` (generated seeded weights), add SAT's "
                      f"`CachedAutoregressiveMixin`, make the processors, then one `chat()` turn of at most "
                      f"{NEW_TOKENS} new tokens — untraced, with construction tracing only, and with full "
                      f"runtime tracing (construction + module + hook + generation events, files written). "
                      f"{sessions} fresh process(es) × {rounds} interleaved rounds, after one warm-up run per "
                      f"mode; ratios are traced ÷ untraced within a round.")
    section.text.append(METHOD)
    started = time.perf_counter()
    all_rounds: list[list[dict[str, Any]]] = []
    errors = []
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        for s in range(sessions):
            res = run_task("bench.cost:session", {"config": config, "rounds": rounds, "new_tokens": NEW_TOKENS,
                                                  "out_dir": str(Path(tmp) / f"s{s}"), "first": s},
                           env=env, timeout=900)
            if not res.ok:
                errors.append(res.error or "unknown error")
                continue
            by_round: dict[int, list[dict[str, Any]]] = {}
            for run in res.value["runs"]:
                by_round.setdefault(run["round"], []).append(run)
            all_rounds.extend(by_round.values())
    section.seconds = time.perf_counter() - started
    if not all_rounds:
        reason = errors[0].splitlines()[-1] if errors else "no runs"
        section.text.append(f"**Not measured:** every session failed. Last error:\n\n```\n{errors[0] if errors else ''}\n```")
        section.targets += [Target("construction tracing overhead", "< 5 % extra", reason, None),
                            Target("full runtime tracing", "≤ 1.5× untraced", reason, None)]
        return section

    runs = [r for rs in all_rounds for r in rs]
    rows = []
    from .tracing import MODES
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        total = summarise([r["total"] for r in mine])
        ratio = summarise(_ratios(all_rounds, mode, "total")) if mode != "untraced" else None
        cpu_ratio = summarise(_ratios(all_rounds, mode, "cpu")) if mode != "untraced" else None
        size = mine[-1].get("trace", {})
        rows.append((
            mode, seconds(total.median, 3), total.spread("{:.3f}"),
            seconds(summarise([r["build"] for r in mine]).median, 3),
            seconds(summarise([r["chat"] for r in mine]).median, 3),
            seconds(summarise([r["write"] for r in mine]).median, 3),
            "1.00×" if ratio is None else f"{ratio.median:.3f}×",
            "—" if ratio is None else ratio.spread("{:.3f}"),
            "1.00×" if cpu_ratio is None else f"{cpu_ratio.median:.3f}×",
            "—" if not size else f"{size.get('bytes', 0) / 1e6:.2f} MB / {size.get('events', 0):,}",
        ))
    section.tables.append(Table(
        "Tiny pipeline, medians over all rounds",
        ("mode", "total", "total spread", "load", "chat turn", "trace write", "× untraced (median of rounds)",
         "ratio spread", "CPU time × untraced", "trace files / events"),
        tuple(rows),
        notes=(f"{len(all_rounds)} rounds in {sessions} session(s); 'load' = `load_model` + processors, "
               "'trace write' = time between the end of the turn and the end of the `with` block "
               "(building the trace and writing `trace.json`). Targets are judged on "
               "wall time; 'CPU time' (the process's user + system time) is shown because it moves less "
               "when other jobs share the machine.",),
    ))
    outputs = {tuple(r["ids"]) for r in runs}
    tokens = len(runs[0]["ids"])
    section.text.append(f"Generated tokens per turn: {tokens}. Identical output in every mode and round: "
                        f"**{'yes' if len(outputs) == 1 else 'NO'}** ({len(outputs)} distinct output(s) "
                        f"over {len(runs)} runs).")
    if errors:
        section.text.append(f"{len(errors)} session(s) failed; first error: `{errors[0].splitlines()[-1]}`")

    def fastest_ratio(mode: str, key: str = "total") -> float:
        """min over runs of ``mode`` ÷ min over untraced runs: other jobs only ever add time, so the
        fastest runs are the least disturbed ones (timeit's argument for the minimum)."""
        return min(r[key] for r in runs if r["mode"] == mode) / min(r[key] for r in runs if r["mode"] == "untraced")

    section.text.append(
        f"Ratio of the fastest runs (least disturbed by other jobs): construction {fastest_ratio('construction'):.3f}×, "
        f"runtime {fastest_ratio('runtime'):.3f}× (load step alone: construction "
        f"{fastest_ratio('construction', 'build'):.3f}×, runtime {fastest_ratio('runtime', 'build'):.3f}×; chat turn "
        f"alone under runtime tracing {fastest_ratio('runtime', 'chat'):.3f}×).")
    con = summarise(_ratios(all_rounds, "construction", "total"))
    con_build = summarise(_ratios(all_rounds, "construction", "build"))
    full = summarise(_ratios(all_rounds, "runtime", "total"))
    section.text.append(f"Construction tracing on the load step alone: median {con_build.median:.3f}× "
                        f"({con_build.spread('{:.3f}')}).")
    section.targets += [
        Target("construction tracing overhead (pipeline)", "< 5 % extra",
               f"{(con.median - 1) * 100:+.1f} % (median of {con.n} rounds; {con.spread('{:.3f}')}; "
               f"fastest runs {(fastest_ratio('construction') - 1) * 100:+.1f} %)",
               con.median - 1 < 0.05, profile="construction"),
        Target("full runtime tracing (pipeline)", "≤ 1.5× untraced",
               f"{full.median:.3f}× (median of {full.n} rounds; {full.spread('{:.3f}')}; "
               f"fastest runs {fastest_ratio('runtime'):.3f}×)", full.median <= 1.5,
               profile="runtime"),
    ]
    return section
