"""``supercheck run``: create the run, and with ``--wait`` follow it to its verdict.

A Rejected run (a full queue) is a finished object: applying it again changes nothing. With
``--wait`` the CLI deletes it and creates it again after its ``retryAfterSeconds``, at most
``--max-resubmits`` times, saying so each time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TextIO

from supercheck.cli import submit
from supercheck.cli.follow import Followed, follow, resubmit_delay
from supercheck.cli.kubeapi import Cluster
from supercheck.cli.render import Renderer, renderer_for
from supercheck.cli.view import EXIT_ERROR, clock_text, exit_code, verdict

EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT: not a verdict
NAME_FREE_SECONDS = 60  # --name given: how long to wait for the rejected object to go before re-creating it


def build(args: argparse.Namespace, namespace: str, name: str | None) -> submit.Plan:
    return submit.plan(args.files, namespace, test_type=args.type, env=args.env, name=name,
                       priority=args.priority, timeout=args.run_timeout, parallelism=args.parallelism,
                       ttl=args.ttl)


def describe(plan: submit.Plan, namespace: str) -> str:
    spec = plan.run["spec"]
    what = f"{len(plan.tests)} test(s): {', '.join(plan.tests[:5])}{' ...' if len(plan.tests) > 5 else ''}"
    extra = f", files in ConfigMap {plan.config_map['metadata']['name']}" if plan.config_map else ""
    return f"created {plan.kind} {namespace}/{plan.name} ({spec['type']}, {what}{extra})"


def _wait_until_gone(cluster: Cluster, plan: submit.Plan, namespace: str, now: Callable[[], float],
                     sleep: Callable[[float], None]) -> bool:
    limit = now() + NAME_FREE_SECONDS
    while now() < limit:
        if cluster.get(plan.plural, namespace, plan.name) is None:
            return True
        sleep(0.5)
    return False


def run(args: argparse.Namespace, cluster: Cluster, namespace: str, out: TextIO, err: TextIO,
        now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        renderer: Renderer | None = None) -> int:
    try:
        plan = build(args, namespace, args.name)
    except submit.SubmitError as exc:
        err.write(f"supercheck run: {exc}\n")
        return EXIT_ERROR
    cluster.create(plan)
    out.write(describe(plan, namespace) + "\n")
    if not args.wait:
        out.write(f"follow it: supercheck get {plan.name} -n {namespace}   "
                  f"(or kubectl get {plan.plural} {plan.name} -n {namespace} -w)\n")
        return 0
    out.flush()
    shown = renderer or renderer_for(out)
    started = now()
    deadline = started + args.timeout
    resubmits = 0
    try:
        while True:
            source = cluster.watch(plan.plural, namespace, plan.name)
            try:
                result = follow(plan.kind, source, shown, now, started, deadline)
            finally:
                source.close()
            delay = resubmit_delay(result.body, resubmits, args.max_resubmits) if result.ended else None
            if delay is None:
                return _ended(plan, result, namespace, shown, out, args, now() - started, resubmits)
            resubmits += 1
            message = ((result.body or {}).get("status") or {}).get("message", "")
            shown.note(f"rejected: {message}")
            if now() + delay >= deadline:
                shown.close()
                out.write(f"TIMED OUT: --timeout {args.timeout}s ends before the run could be resubmitted "
                          f"(in {delay}s)\n")
                cluster.delete(plan.plural, namespace, plan.name)
                return EXIT_ERROR
            shown.note(f"resubmitting in {delay}s (resubmission {resubmits} of at most {args.max_resubmits}): "
                       f"deleting {plan.kind} {plan.name} and creating it again")
            sleep(delay)
            cluster.delete(plan.plural, namespace, plan.name)
            if args.name and not _wait_until_gone(cluster, plan, namespace, now, sleep):
                shown.close()
                out.write(f"ERROR: {plan.kind} {plan.name} is still there {NAME_FREE_SECONDS}s after its "
                          "deletion: cannot create it again under the same name\n")
                return EXIT_ERROR
            plan = build(args, namespace, args.name)
            cluster.create(plan)
            shown.note(describe(plan, namespace))
    except KeyboardInterrupt:
        shown.close()
        if args.cancel_on_interrupt:
            cluster.delete(plan.plural, namespace, plan.name)
            out.write(f"interrupted: deleted {plan.kind} {plan.name} (the operator cancels it)\n")
        else:
            out.write(f"interrupted: {plan.kind} {plan.name} goes on; follow it with supercheck get {plan.name} "
                      f"-n {namespace}, cancel it with kubectl delete {plan.plural} {plan.name} -n {namespace}\n")
        out.flush()
        return EXIT_INTERRUPTED


def _ended(plan: submit.Plan, result: Followed, namespace: str, shown: Renderer, out: TextIO,
           args: argparse.Namespace, elapsed: float, resubmits: int) -> int:
    shown.close()
    if result.timed_out:
        phase = ((result.body or {}).get("status") or {}).get("phase") or "Pending"
        out.write(f"TIMED OUT: waited {clock_text(elapsed)} (--timeout {args.timeout}s); {plan.kind} {plan.name} "
                  f"is {phase} and goes on (kubectl delete {plan.plural} {plan.name} -n {namespace} cancels it)\n")
        out.flush()
        return EXIT_ERROR
    if result.gone:
        out.write(f"ERROR: {plan.kind} {plan.name} was deleted before it ended\n")
        out.flush()
        return EXIT_ERROR
    body = result.body or {}
    for text in verdict(plan.kind, body, namespace, elapsed):
        out.write(text + "\n")
    phase = (body.get("status") or {}).get("phase")
    if phase == "Rejected" and resubmits:
        out.write(f"  gave up after {resubmits} resubmission(s) (--max-resubmits {args.max_resubmits})\n")
    out.flush()
    return exit_code(phase)
