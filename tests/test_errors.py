"""Unexpected exceptions: one traceback per call site, then counts, summed up at most once a minute."""

import logging

import pytest

import errors
from errors import UnexpectedErrors


def fail(reporter: UnexpectedErrors, site: str, message: str = "boom") -> None:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        reporter.report(site, "the flow is unaffected")


def test_the_first_error_of_a_site_has_its_traceback_and_repeats_are_summed_up(caplog: pytest.LogCaptureFixture):
    clock = [1000.0]
    reporter = UnexpectedErrors(logging.getLogger("genai"), clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="genai"):
        fail(reporter, "the response hook")
        for number in range(5):
            clock[0] += 1
            fail(reporter, "the response hook", f"boom {number}")
        clock[0] += errors.SUMMARY_EVERY_S
        fail(reporter, "the response hook", "the last one")
    first, summary = caplog.records
    assert first.getMessage() == "genai: the response hook failed; the flow is unaffected."
    assert first.exc_info and "RuntimeError: boom" in caplog.text
    assert summary.getMessage() == (
        "genai: the response hook failed 6 more times (7 in all, the last: RuntimeError: the last one); "
        "the flow is unaffected."
    )
    assert not summary.exc_info
    assert reporter.count("the response hook") == 7


def test_each_site_gets_its_own_first_traceback(caplog: pytest.LogCaptureFixture):
    reporter = UnexpectedErrors(logging.getLogger("genai"), prefix="")
    with caplog.at_level(logging.WARNING, logger="genai"):
        fail(reporter, "the request hook")
        fail(reporter, "recording a Call")
        fail(reporter, "recording a Call")
    assert [record.getMessage() for record in caplog.records] == [
        "the request hook failed; the flow is unaffected.",
        "recording a Call failed; the flow is unaffected.",
    ]
    assert all(record.exc_info for record in caplog.records)
    assert (reporter.count("recording a Call"), reporter.count("the websocket_start hook")) == (2, 0)
