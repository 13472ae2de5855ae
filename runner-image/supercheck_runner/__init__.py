"""supercheck-runner: the entrypoint of a runner pod.

One attempt of one TestRun: validate the script, run it (Playwright or k6) under the
runner's own deadline, upload what it produced to S3, and report the outcome through the
contract (:mod:`supercheck_contract`): an exit code, a termination message and
``result.json`` in S3, written last.

Modules, one concern each:

* :mod:`.settings`   runner-only environment (paths of node, k6, Chromium...), beside ``RunnerConfig``
* :mod:`.timer`      the deadline: when to stop the test so that uploading still fits
* :mod:`.process`    running the test process in its own group, teeing its output, killing the whole tree
* :mod:`.validate`   checks before executing (size, syntax, imports, k6 inspect)
* :mod:`.playwright` config generation, execution, JSON report -> TestSummary and failure class
* :mod:`.k6`         command line, execution, summary export -> K6Summary and failure class
* :mod:`.artifacts`  S3: content types, key layout, parallel uploads retried through outages, multipart
* :mod:`.storage`    what an S3 error means: an outage to wait out, or a misconfiguration to report
* :mod:`.outcome`    what an engine hands back, and the termination message
* :mod:`.__main__`   the imperative shell tying them together
"""
