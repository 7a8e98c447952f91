"""The API key from a file (RERANK_API_KEY_FILE), and the guard that keeps workers alive when Redis goes away."""

from types import SimpleNamespace

import pytest
import redis
from pydantic import ValidationError

from shared.settings import Settings


def test_the_key_file_supplies_the_key(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cret-from-file\n")
    settings = Settings(api_key_file=key_file)
    assert settings.api_key.get_secret_value() == "s3cret-from-file"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_an_explicit_key_wins_over_the_file(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("from-file")
    assert Settings(api_key="from-env", api_key_file=key_file).api_key.get_secret_value() == "from-env"


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_a_missing_or_empty_key_file_is_refused(tmp_path, content):
    key_file = tmp_path / "api-key"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(ValidationError, match="RERANK_API_KEY_FILE"):
        Settings(api_key_file=key_file)


def test_acks_on_a_torn_down_broker_connection_become_connection_errors():
    from kombu.transport import redis as redis_transport

    from worker.tasks import broker_guard

    broker_guard.install()
    broker_guard.install()  # idempotent
    # a QoS whose channel lost its connection, as kombu leaves it while Redis is away
    channel = SimpleNamespace(connection=None, conn_or_acquire=lambda client=None: (_ for _ in ()).throw(
        AttributeError("'NoneType' object has no attribute 'hostname'")))  # fmt: skip
    qos = redis_transport.QoS.__new__(redis_transport.QoS)
    qos.channel = channel
    qos._delivered = {}
    qos.unacked_index_key, qos.unacked_key = "unacked_index", "unacked"
    for call in (lambda: qos.ack("tag"), lambda: qos.reject("tag"), lambda: qos.restore_unacked()):
        with pytest.raises(redis.exceptions.ConnectionError):
            call()


def test_an_invalid_setting_is_one_line_naming_the_variable(monkeypatch):
    from shared.settings import load_settings

    monkeypatch.setenv("RERANK_MAX_PASSAGES", "lots")
    monkeypatch.setenv("RERANK_DEVICE", "gpu")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    message = str(stopped.value)
    assert "\n" not in message
    assert "RERANK_MAX_PASSAGES must be a valid integer" in message
    assert "RERANK_DEVICE must be 'auto', 'cpu' or 'cuda'" in message
    assert "max_passages" not in message


def test_several_api_keys(monkeypatch):
    from api.ranking.api_keys import caller_for

    settings = Settings(api_key="key-a, key-b")
    assert settings.api_keys == ["key-a", "key-b"]
    a, b = caller_for("Bearer key-a", settings.api_keys), caller_for("bearer key-b", settings.api_keys)
    assert a and b and a != b and "key-a" not in a
    assert caller_for("Bearer key-c", settings.api_keys) is None and caller_for(None, settings.api_keys) is None


def test_log_lines_escape_control_characters_and_urls_hide_passwords():
    import logging

    from shared.log_format import TEXT_FORMAT, TextFormatter, redacted_url

    record = logging.LogRecord("api.access", logging.INFO, "", 0, "GET %s 401", ("/x\n2026 CRITICAL forged",), None)
    record.request_tag = ""
    assert "\n" not in TextFormatter(TEXT_FORMAT).format(record)
    assert redacted_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
