"""RERANK_TRUSTED_HOSTS' default follows RERANK_HOST: loopback names for an API bound to loopback, any otherwise."""

import pytest

from shared.settings import Settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_loopback_api_answers_for_loopback_names_by_default(host):
    assert Settings(host=host).allowed_hosts == ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.internal"])
def test_an_api_on_another_address_answers_for_any_name_by_default(host):
    assert Settings(host=host).allowed_hosts == ["*"]


def test_the_setting_wins_over_the_default():
    assert Settings(host="127.0.0.1", trusted_hosts="*").allowed_hosts == ["*"]
    assert Settings(host="0.0.0.0", trusted_hosts="Rerank.example.com, *.example.org").allowed_hosts == [
        "rerank.example.com", "*.example.org"]  # fmt: skip
    assert Settings(host="0.0.0.0", trusted_hosts="").allowed_hosts == ["*"]  # as compose passes an unset variable
