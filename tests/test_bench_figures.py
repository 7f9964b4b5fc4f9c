"""The benchmark's arithmetic (benchmarks/figures.py): the outage from a client's timestamped
attempts, the paired ratios, and the memory read from /proc."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import figures  # noqa: E402
from figures import EXEC_FAILED, OK, REQUEST_FAILED, Attempt  # noqa: E402


def attempts(*outcomes: str, period: float = 0.5, took: float = 0.1) -> list[Attempt]:
    return [Attempt(i * period, i * period + took, o) for i, o in enumerate(outcomes)]


def test_no_failure_is_no_outage():
    o = figures.outage(attempts(OK, OK, OK, OK))
    assert o["longest_gap_s"] == 0
    assert o["longest_gap_between_successes_s"] == 0.5
    assert o["request_failed_s"] == o["exec_failed_s"] == 0
    assert o["down_from_s"] is None and not o["never_recovered"]
    assert o["median_interval_s"] == 0.5


def test_failed_requests_and_failed_execs_are_counted_apart():
    o = figures.outage(attempts(OK, REQUEST_FAILED, REQUEST_FAILED, EXEC_FAILED, OK, OK))
    # From the success at 0 s to the next one at 2 s.
    assert o["longest_gap_s"] == 2.0
    assert o["request_failed_s"] == 1.0
    assert o["exec_failed_s"] == 0.5
    assert o["longest_request_failed_s"] == 1.0
    assert o["counts"] == {OK: 3, REQUEST_FAILED: 2, EXEC_FAILED: 1}
    assert (o["down_from_s"], o["down_to_s"]) == (0.5, 1.6)


def test_the_longest_of_several_gaps_and_runs():
    o = figures.outage(
        attempts(OK, REQUEST_FAILED, OK, REQUEST_FAILED, EXEC_FAILED, REQUEST_FAILED, OK)
    )
    assert o["longest_gap_s"] == 2.0
    # An exec failure breaks a run of failed requests: nothing is known of traffic then.
    assert o["longest_request_failed_s"] == 0.5
    assert o["request_failed_s"] == 1.5


def test_a_slow_attempt_stands_for_the_time_until_the_next():
    runs = [Attempt(0, 0.1, OK), Attempt(0.5, 4.5, EXEC_FAILED), Attempt(4.5, 4.6, OK)]
    o = figures.outage(runs)
    assert o["exec_failed_s"] == 4.0
    assert o["longest_gap_s"] == 4.5


def test_a_client_that_never_gets_through_again_says_so():
    o = figures.outage(attempts(OK, REQUEST_FAILED, REQUEST_FAILED))
    assert o["never_recovered"]
    # No success after the failures: no gap closes; the failed time still counts.
    assert o["longest_gap_s"] == 0
    assert o["request_failed_s"] == pytest.approx(0.6)


def test_the_attempts_order_is_their_start():
    shuffled = list(reversed(attempts(OK, REQUEST_FAILED, OK)))
    assert figures.outage(shuffled)["longest_gap_s"] == 1.0


def test_no_attempt_is_an_error():
    with pytest.raises(ValueError):
        figures.outage([])


def test_ratios_are_taken_pair_by_pair():
    r = figures.pair_ratios([2.0, 3.0, 2.2], [1.0, 2.0, 1.0])
    assert r["ratios"] == [2.0, 1.5, 2.2]
    assert r["ratio_median"] == 2.0
    assert (r["ratio_min"], r["ratio_max"]) == (1.5, 2.2)
    assert (r["a_median_s"], r["b_median_s"]) == (2.2, 1.0)
    with pytest.raises(ValueError):
        figures.pair_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        figures.pair_ratios([], [])


SMAPS_ROLLUP = """\
55d0c0a4d000-7ffd4b5f8000 ---p 00000000 00:00 0                          [rollup]
Rss:               12944 kB
Pss:                4113 kB
Pss_Anon:           2980 kB
Shared_Clean:       9120 kB
"""


def test_pss_and_meminfo_are_read_from_procs_text():
    assert figures.pss_kib(SMAPS_ROLLUP) == 4113
    assert figures.smaps_kib(SMAPS_ROLLUP) == {"Rss": 12944, "Pss": 4113, "Pss_Anon": 2980}
    with pytest.raises(ValueError):
        figures.pss_kib("Rss: 1 kB\n")
    meminfo = "MemTotal:       24727592 kB\nMemFree:  100 kB\nMemAvailable:   21000000 kB\n"
    assert figures.meminfo_kib(meminfo) == 21000000
    assert figures.meminfo_kib(meminfo, "MemTotal") == 24727592


def test_the_ratio_rows_and_their_targets_render():
    import run

    rows = [
        {"run": "chapter", "a": "pyinfra -y A", "b": "pyinfra -y B", "a_cpu_median_s": 1.3}
        | figures.pair_ratios([2.0, 2.2], [1.0, 1.0])
        | {"b_cpu_median_s": 0.4},
        {"run": "nodes only", "a": "pyinfra -y A", "b": "pyinfra -y B", "a_cpu_median_s": 0.5}
        | figures.pair_ratios([1.1, 1.1], [1.0, 1.0])
        | {"b_cpu_median_s": 0.4},
    ]
    checks = run.ratio_targets(rows)
    assert [c["pass"] for c in checks] == [False, True]
    machine = {
        "nproc": 2,
        "cpu": "x",
        "memory_gib": 23.5,
        "kernel": "6",
        "python": "3.11",
        "commit": "abc",
        "date": "today",
        "busy_cores_before": 0.1,
        "loadavg": "1.00 2.00 3.00",
    }
    text = run.full_markdown(
        {"ratios": {"command": "c", "machine": machine, "rows": rows, "targets": checks}}
    )
    assert "| chapter | 2.10 | 1.00 | 2.10 |" in text
    assert "FAIL: no-change re-run (chapter) <= 1.5x" in text
    assert "load average 1.00 2.00 3.00" in text
