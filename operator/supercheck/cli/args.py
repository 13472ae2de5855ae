"""The command line: every command, its arguments and their defaults, in one parser."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DEFAULT_WAIT_TIMEOUT = 3600  # seconds: generous; a run's own timeout ends it first in most cases
DEFAULT_MAX_RESUBMITS = 5
DEFAULT_LINK_SECONDS = 3600


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env takes NAME=VALUE, not {text!r}")
    return name, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _not_negative(text: str) -> int:
    value = _positive(text) if text != "0" else 0
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="supercheck",
        description="Run Playwright and k6 tests in Kubernetes with the Supercheck operator, from your kubeconfig.")
    top.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then "
                     "in a pod its ServiceAccount)")
    top.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def namespaced(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", help="namespace (default: the context's, else 'default')")

    run = sub.add_parser("run", help="run test files as a TestRun (one file) or a JobRun (several, or a folder)",
                         description="One file becomes a TestRun (its script inline); several files or a folder "
                         "become a JobRun whose tests come from a ConfigMap of the files. Exit codes with --wait: "
                         "0 passed, 1 failed, 2 error, timed out, rejected or cancelled.")
    run.add_argument("files", nargs="+", metavar="FILE", help="a .spec.ts/.js Playwright spec, a k6 script, "
                     "or a folder")
    namespaced(run)
    run.add_argument("--type", choices=("playwright", "k6"),
                     help="test type (default: from the files: a .js file importing 'k6' is k6)")
    run.add_argument("--env", action="append", type=_env_pair, default=[], metavar="NAME=VALUE",
                     help="an environment variable for the tests (repeatable)")
    run.add_argument("--parallelism", type=_positive, help="a JobRun's runner pods at once (default 1)")
    run.add_argument("--name", help="the run's name (default: <file or folder name>-<random>)")
    run.add_argument("--priority", type=int, help="-1000..1000, higher runs first (default 0)")
    run.add_argument("--run-timeout", type=_positive, metavar="SECONDS",
                     help="the run's spec.timeoutSeconds (default: the operator's)")
    run.add_argument("--ttl", type=_not_negative, metavar="SECONDS",
                     help="delete the run this long after it ends (spec.ttlSecondsAfterFinished; default: keep it)")
    run.add_argument("--wait", action="store_true",
                     help="follow the run until it ends, print the verdict, exit 0/1/2")
    run.add_argument("--timeout", type=_positive, default=DEFAULT_WAIT_TIMEOUT, metavar="SECONDS",
                     help=f"with --wait: give up after this long, exit 2 (default {DEFAULT_WAIT_TIMEOUT})")
    run.add_argument("--max-resubmits", type=_not_negative, default=DEFAULT_MAX_RESUBMITS, metavar="N",
                     help="with --wait: a Rejected run is deleted and created again after its retryAfterSeconds, "
                     f"at most N times (default {DEFAULT_MAX_RESUBMITS})")
    run.add_argument("--cancel-on-interrupt", action="store_true",
                     help="with --wait: Ctrl-C deletes (cancels) the run; without it the run goes on")

    get = sub.add_parser("get", help="list TestRuns and JobRuns like kubectl get")
    get.add_argument("name", nargs="?", help="one run's name")
    namespaced(get)
    get.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")

    logs = sub.add_parser("logs", help="the runner pods' logs of a run")
    logs.add_argument("name")
    namespaced(logs)
    logs.add_argument("--tail", type=_positive, help="only the last N lines of each pod")

    report = sub.add_parser("report", help="download a run's HTML report (the whole folder) and print its path",
                            description="Uses your S3 credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                            "(or any boto3 credential source), S3_ENDPOINT_URL for a non-AWS S3, AWS_REGION.")
    report.add_argument("name")
    namespaced(report)
    report.add_argument("--dir", default="supercheck-reports", help="where to put it: DIR/<name>/ "
                        "(default ./supercheck-reports)")
    report.add_argument("--open", action="store_true", help="open the downloaded report in a browser")
    report.add_argument("--link", action="store_true",
                        help="print a presigned link to index.html instead of downloading (its assets, such as "
                        "the trace viewer, need the whole folder: download for those)")
    report.add_argument("--link-seconds", type=_positive, default=DEFAULT_LINK_SECONDS, metavar="SECONDS",
                        help=f"how long the link works (default {DEFAULT_LINK_SECONDS})")
    return top


def parse(argv: Sequence[str]) -> argparse.Namespace:
    return parser().parse_args(list(argv))
