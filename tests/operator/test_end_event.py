"""The Event a run's end posts says the result and the message once each."""

from __future__ import annotations

from supercheck.engine.results import end_event_text
from supercheck.models import Phase


def test_a_k6_message_that_begins_with_its_result_is_said_once():
    text = end_event_text(Phase.PASSED, "thresholds passed", "thresholds passed; 0 checks passed; 1 iterations")
    assert text == "Passed: thresholds passed; 0 checks passed; 1 iterations"


def test_a_result_and_a_different_message_are_both_said():
    assert end_event_text(Phase.FAILED, "1 failed", "home page: expected title") == \
        "Failed: 1 failed; home page: expected title"


def test_missing_parts_leave_no_stray_separator():
    assert end_event_text(Phase.ERROR, None, "the script does not parse") == "Error: the script does not parse"
    assert end_event_text(Phase.CANCELLED, None, None) == "Cancelled"
