"""shared/log_format.py: text or JSON lines, each tagged with the request being served."""

from __future__ import annotations

import json
import logging

import pytest

from shared.log_format import configure_logging, request_id


@pytest.fixture
def root_logger():
    """Restore the root logger's handlers and level after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id_and_extras(root_logger, capsys) -> None:
    configure_logging("info", "json")
    log = logging.getLogger("test.json")
    token = request_id.set("req-123")
    try:
        log.info("ranked %d passages", 3, extra={"model": "m", "passages": 3})
    finally:
        request_id.reset(token)
    log.debug("not shown at info level")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 2
    assert lines[0]["message"] == "ranked 3 passages"
    assert lines[0]["request_id"] == "req-123"
    assert (lines[0]["level"], lines[0]["logger"], lines[0]["model"], lines[0]["passages"]) == ("INFO", "test.json", "m", 3)
    assert lines[0]["time"].endswith("+00:00")
    assert "request_id" not in lines[1]
    assert "ValueError: boom" in lines[1]["exception"]


def test_text_lines_tag_the_request(root_logger, capsys) -> None:
    configure_logging("info", "text")
    configure_logging("info", "text")  # twice: still one handler of ours
    token = request_id.set("abc")
    try:
        logging.getLogger("test.text").warning("slow")
    finally:
        request_id.reset(token)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].endswith("WARNING test.text: slow [req abc]")


def test_named_loggers_are_sent_through_the_root_handler(root_logger, capsys) -> None:
    own = logging.getLogger("test.own-handler")
    own.addHandler(logging.StreamHandler())
    own.propagate = False
    configure_logging("info", "json", loggers=("test.own-handler",))
    own.info("hello")
    assert json.loads(capsys.readouterr().err)["message"] == "hello"
