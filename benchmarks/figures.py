"""
The benchmark's pure arithmetic (no lab, no processes), kept apart so the fast tests cover it:
the network outage from a client's timestamped attempts, the ratios of paired runs, and the
memory a process is charged (its PSS).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

OK = "ok"
# agnhost connect ran in the pod and exited non-zero: pod traffic did not get through.
REQUEST_FAILED = "request failed"
# The exec itself did not run to an exit (API server, kubelet or containerd not answering, the
# stream cut): nothing is known of pod traffic during it.
EXEC_FAILED = "exec failed"
OUTCOMES = (OK, REQUEST_FAILED, EXEC_FAILED)


@dataclass(frozen=True)
class Attempt:
    """One request: when its exec started and ended (seconds on one clock), and what it said."""

    start: float
    end: float
    outcome: str
    said: str = ""


def outage(attempts: list[Attempt]) -> dict:
    """What a client's attempts say about the outage.

    Each attempt stands for the time from its start to the next attempt's start (the last one:
    to its own end), so the figures are a step function of the samples: their resolution is
    the interval between attempts (``median_interval_s``).

    - ``longest_gap_s``: the longest time between the starts of two consecutive successful
      requests (exec failures in between count as part of the gap: nothing got through then
      either, as far as the client can tell); 0 when every attempt succeeded;
    - ``request_failed_s`` / ``exec_failed_s``: the total time of the attempts of each kind;
    - ``longest_request_failed_s``: the longest run of consecutive failed requests alone;
    - ``down_from_s`` / ``down_to_s``: the start of the first attempt that was not a success
      and the end of the last one (None when there was none).
    """
    attempts = sorted(attempts, key=lambda a: a.start)
    if not attempts:
        raise ValueError("no attempts")
    slices = [
        (a, (attempts[i + 1].start if i + 1 < len(attempts) else a.end) - a.start)
        for i, a in enumerate(attempts)
    ]
    totals = dict.fromkeys(OUTCOMES, 0.0)
    counts = dict.fromkeys(OUTCOMES, 0)
    for a, length in slices:
        totals[a.outcome] += length
        counts[a.outcome] += 1
    oks = [a.start for a in attempts if a.outcome == OK]
    gaps = [b - a for a, b in zip(oks, oks[1:], strict=False)]
    # Only gaps with a failure inside are outages; between two successes next to each other the
    # gap is just the interval.
    failed_between = []
    previous = None
    for a in attempts:
        if a.outcome == OK:
            if previous is not None and previous[1]:
                failed_between.append(a.start - previous[0])
            previous = (a.start, False)
        elif previous is not None:
            previous = (previous[0], True)
    run = longest_run = 0.0
    for a, length in slices:
        run = run + length if a.outcome == REQUEST_FAILED else 0.0
        longest_run = max(longest_run, run)
    bad = [a for a in attempts if a.outcome != OK]
    intervals = [b.start - a.start for a, b in zip(attempts, attempts[1:], strict=False)]
    return {
        "attempts": len(attempts),
        "counts": counts,
        "longest_gap_s": round(max(failed_between, default=0.0), 3),
        "longest_gap_between_successes_s": round(max(gaps, default=0.0), 3),
        "request_failed_s": round(totals[REQUEST_FAILED], 3),
        "exec_failed_s": round(totals[EXEC_FAILED], 3),
        "longest_request_failed_s": round(longest_run, 3),
        "down_from_s": round(bad[0].start, 3) if bad else None,
        "down_to_s": round(bad[-1].end, 3) if bad else None,
        "median_interval_s": round(statistics.median(intervals), 3) if intervals else None,
        "max_interval_s": round(max(intervals), 3) if intervals else None,
        "never_recovered": bool(attempts) and attempts[-1].outcome != OK,
    }


def pair_ratios(a_seconds: list[float], b_seconds: list[float]) -> dict:
    """A against B from paired runs (A B A B ...): the ratio is taken pair by pair, so the
    machine's drift during the call cancels; the median of the ratios is the figure."""
    if not a_seconds or len(a_seconds) != len(b_seconds):
        raise ValueError("pairs need as many A runs as B runs, at least one")
    ratios = [a / b for a, b in zip(a_seconds, b_seconds, strict=True)]
    return {
        "pairs": len(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "a_median_s": round(statistics.median(a_seconds), 3),
        "b_median_s": round(statistics.median(b_seconds), 3),
    }


def smaps_kib(smaps_rollup: str) -> dict[str, int]:
    """A process's memory (KiB) from /proc/PID/smaps_rollup: ``Rss``; ``Pss``, its private pages
    and its share of the pages it shares (libraries, the nodes' common root), so that summing it
    over processes counts each page once, wherever its other users are (other labs on the
    machine run the same binaries from the same cache, and take their share); and
    ``Pss_Anon``, its anonymous memory (heaps, stacks: what no page cache holds for it)."""
    values = dict(re.findall(r"^(Rss|Pss|Pss_Anon):\s+(\d+) kB$", smaps_rollup, re.M))
    if "Pss" not in values:
        raise ValueError("no Pss line")
    return {key: int(value) for key, value in values.items()}


def pss_kib(smaps_rollup: str) -> int:
    return smaps_kib(smaps_rollup)["Pss"]


def meminfo_kib(meminfo: str, key: str = "MemAvailable") -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB$", meminfo, re.M)
    if not match:
        raise ValueError(f"no {key} line")
    return int(match.group(1))
