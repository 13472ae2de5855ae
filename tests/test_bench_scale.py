"""The pure parts of hack/bench_scale.py (no cluster): percentiles, times, the ideal makespan,
dispatch/refill pairing, the concurrency sweep, the apiserver's request counts, the printed table."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path

import pytest

HACK = Path(__file__).resolve().parents[1] / "hack"


def _load():
    sys.path.insert(0, str(HACK))  # bench_kit, beside it (as when the script runs)
    spec = importlib.util.spec_from_file_location("bench_scale", HACK / "bench_scale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bs = _load()


def _sample(name: str, value: int, **labels: str) -> str:
    """One line of /metrics, labels as the kube-apiserver writes them (sorted, every one present)."""
    base = {"component": "apiserver", "dry_run": "", "group": "", "scope": "resource", "subresource": "",
            "version": "v1"}
    merged = dict(sorted({**base, **labels}.items()))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + "} " + str(value)


TOTAL = "apiserver_request_total"
METRICS = "\n".join([
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb.",
    "# TYPE apiserver_request_total counter",
    _sample(TOTAL, 4, code="200", resource="pods", scope="namespace", verb="LIST"),
    _sample(TOTAL, 10, code="201", resource="pods", verb="POST"),
    _sample(TOTAL, 2, code="409", resource="pods", verb="POST"),
    _sample(TOTAL, 7, code="200", resource="pods", subresource="status", verb="PATCH"),
    _sample(TOTAL, 30, code="200", group="supercheck.io", resource="testruns", subresource="status", verb="PATCH",
            version="v1alpha1"),
    _sample(TOTAL, 3, code="0", resource="pods", scope="namespace", verb="WATCH"),
    _sample(TOTAL, 5, code="200", component="", resource="", scope="", subresource="/metrics", verb="GET",
            version=""),
    "# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution.",
    "# TYPE apiserver_request_duration_seconds histogram",
    _sample("apiserver_request_duration_seconds_bucket", 12, le="0.005", resource="pods", verb="POST"),
    _sample("apiserver_request_duration_seconds_count", 12, resource="pods", verb="POST"),
]) + "\n"


def test_percentiles_are_nearest_rank_and_nan_when_empty():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert bs.pct(values, 50) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert bs.pct(values, 99) == 99.0
    assert bs.pct(values, 100) == 100.0
    assert bs.pct(reversed(values), 0) == 1.0
    assert bs.pct([3.0], 99) == 3.0
    assert math.isnan(bs.pct([], 50))


def test_times_parse_with_fractions_zulu_and_offsets():
    assert bs.parse_time("1970-01-01T00:00:01Z") == 1.0
    assert bs.parse_time("1970-01-01T00:00:01.250000Z") == pytest.approx(1.25)
    assert bs.parse_time("1970-01-01T01:00:01+01:00") == 1.0


def test_ideal_makespan_is_every_slot_always_busy():
    assert bs.ideal_makespan(1000, 1.2, 6) == pytest.approx(200.0)
    assert bs.ideal_makespan(6, 2.0, 6) == pytest.approx(2.0)
    assert bs.ideal_makespan(0, 2.0, 6) == 0.0
    assert bs.overhead_pct(250.0, 200.0) == pytest.approx(25.0)
    assert math.isnan(bs.overhead_pct(1.0, 0.0))


def test_refill_pairs_the_ith_finish_with_the_pod_created_capacity_later():
    created = [0.0, 0.1, 5.0, 6.0, 7.5]  # capacity 2: the 3rd pod waits for the 1st to finish
    finished = [4.9, 5.5, 8.0, 9.0, 10.0]
    assert bs.refill_latencies(finished, created, 2) == pytest.approx([0.1, 0.5, -0.5])
    assert bs.refill_latencies(list(reversed(finished)), list(reversed(created)), 2) == pytest.approx(
        [0.1, 0.5, -0.5])  # ordering comes from the times, not the input order
    assert bs.refill_latencies([1.0], [0.0], 2) == []


def test_dispatch_counts_from_when_a_pod_could_be_created():
    # capacity 1: the second run was created at 0 but its slot freed only at 3.0 -> dispatch 0.2, not 3.2
    pods = [(0.0, 0.05), (0.0, 3.2), (10.0, 10.3)]
    finished = [3.0, 4.0]
    assert bs.dispatch_latencies(pods, finished, 1) == pytest.approx([0.05, 0.2, 0.3])
    # with free capacity, it is created -> pod
    assert bs.dispatch_latencies(pods, finished, 3) == pytest.approx([0.05, 3.2, 0.3])


def test_max_concurrent_sweeps_in_event_order_ends_first_on_a_tie():
    assert bs.max_concurrent([(1, 4), (2, 5), (3, 6)]) == 3
    assert bs.max_concurrent([(1, 2), (2, 3), (3, 4)]) == 1
    assert bs.max_concurrent([(1, None), (5, 6), (7, None)]) == 2
    assert bs.max_concurrent([]) == 0


def test_request_totals_sum_codes_per_verb_and_resource_without_non_resource_requests():
    totals = bs.request_totals(METRICS)
    assert totals == Counter({("POST", "pods"): 12, ("LIST", "pods"): 4, ("PATCH", "pods/status"): 7,
                              ("PATCH", "testruns/status"): 30, ("WATCH", "pods"): 3})


def test_requests_made_take_out_own_requests_and_watches():
    before = Counter({("POST", "pods"): 10, ("PATCH", "testruns/status"): 5, ("WATCH", "pods"): 1})
    after = Counter({("POST", "pods"): 20, ("PATCH", "testruns/status"): 50, ("WATCH", "pods"): 9,
                     ("POST", "testruns"): 100, ("DELETE", "configmaps"): 3})
    own = Counter({("POST", "testruns"): 100, ("WATCH", "pods"): 2})
    assert bs.requests_made(before, after, own) == Counter({("POST", "pods"): 10, ("PATCH", "testruns/status"): 45,
                                                            ("DELETE", "configmaps"): 3})


def _result(system: str, makespan: float) -> object:
    return bs.Result(system, runs=100, capacity=5, makespan=makespan, run_seconds=1.0,
                     dispatch=[0.01, 0.02, 0.5], refill=[0.1, 0.2, 0.3], api_requests=1234,
                     api_split=Counter({("PATCH", "testruns/status"): 800, ("POST", "pods"): 100}))


def test_the_table_prints_each_system_side_by_side_and_why_one_did_not_run():
    table = bs.format_table([_result("Supercheck", 25.0), _result("Indexed Job", 20.0)],
                            {"Kueue": "not built (hack/build-kueue.sh builds it)"})
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["makespan", "s"]
    sc = lines[2].split()
    # makespan, runs/s, run s, ideal (100 x 1.0 / 5), overhead %, dispatch p50/p99, refill p99, API/run
    assert sc == ["Supercheck", "25.0", "4.00", "1.00", "20.0", "25", "20/500", "300", "12.3"]
    assert lines[3].split()[:4] == ["Indexed", "Job", "20.0", "5.00"]
    assert lines[4] == f"{'Kueue':12} not run: not built (hack/build-kueue.sh builds it)"
    assert bs.ratio_line([_result("Supercheck", 25.0), _result("Indexed Job", 20.0)]) == \
        "throughput Supercheck / Indexed Job: 0.80 (target >= 0.8: met)"
    assert bs.ratio_line([_result("Supercheck", 25.0), _result("Indexed Job", 19.0)]).endswith("NOT met)")
    assert bs.ratio_line([_result("Supercheck", 25.0)]) is None


def test_a_system_without_figures_prints_dashes():
    empty = bs.Result("Kueue", runs=10, capacity=2, makespan=5.0, run_seconds=float("nan"), dispatch=[], refill=[])
    row = bs.format_table([empty], {}).splitlines()[2].split()
    assert row == ["Kueue", "5.0", "2.00", "-", "-", "-", "-/-", "-", "0.0"]


def test_supercheck_lines_name_each_violated_invariant():
    ok = bs.SupercheckExtras(slot_held=[1.0, 1.5], rss_queued_mb=180, rss_peak_mb=200,
                             rss_settled_mb=170, queued_at_settled=60, cpu_seconds=50,
                             idle_cpu_pct=0.5, idle_seconds=10, max_pods=5, max_ledger_running=5,
                             ledger_end=(0, 0), pg_rows=100)
    text = bs.format_extras(_result("Supercheck", 25.0), ok)
    assert "invariants: OK" in text
    assert "500.0 s per 1,000 runs" in text
    assert "1000/1500 ms" in text
    assert "180 MB 12 s after the last create" in text and "170 MB at 45 s (60 still queued), peak 200 MB" in text
    bad = bs.SupercheckExtras(**{**vars(ok), "max_pods": 6, "ledger_end": (0, 2), "pg_rows": 99})
    assert bad.violations(100, 5) == ["6 runner pods non-terminal at once (capacity 5)",
                                      "the ledger ended at running=0 queued=2",
                                      "99 final rows in PostgreSQL for 100 runs"]
    assert "VIOLATED" in bs.format_extras(_result("Supercheck", 25.0), bad)


def test_the_details_give_api_requests_per_run_by_verb_and_resource():
    text = bs.format_details(_result("Supercheck", 25.0))
    assert "PATCH testruns/status 8.00" in text and "POST pods 1.00" in text


def test_job_finished_and_run_terminal_predicates():
    assert bs.job_finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    assert not bs.job_finished({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}})
    assert not bs.job_finished({"status": None})
    assert bs.run_terminal({"status": {"phase": "Passed"}})
    assert not bs.run_terminal({"status": {"phase": "Queued"}})
    assert not bs.run_terminal({})
