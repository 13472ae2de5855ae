import pytest

from supercheck.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [("20s", 20), ("1m30s", 90), ("2h", 7200), ("500ms", 0.5),
                                               ("1.5m", 90), ("1h1m1s", 3661)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "20", "s", "1d", "1m 30s", "-1s", "1s2"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
