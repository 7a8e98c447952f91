"""gRPC against a hostile client. Streams opened and never sent (HEADERS without DATA) cannot pile up: each
connection takes at most RERANK_GRPC_MAX_STREAMS at once (the rest are refused), a call whose message has not
arrived within RERANK_BODY_TOTAL_TIMEOUT ends with DEADLINE_EXCEEDED, connections past
RERANK_GRPC_MAX_CONNECTIONS are refused, the API's memory stays bounded and ServerLive answers meanwhile (a
raw HTTP/2 client, `h2`, plays the attacker). A batch of a million BYTES elements is refused on its shape
without stalling the event loop, and the RPCs not served answer UNIMPLEMENTED without a traceback."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from api.ranking.model_names import grpc_model_name
from tests.integration.hostile_clients import health_probes, silent_api

MODEL_ID = "grpc/stream-limits"
LIMITS = {"grpc_max_streams": 8, "grpc_max_connections": 24, "body_total_timeout": 2,
          "max_body_bytes": 16 * 1024 * 1024}  # fmt: skip
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def grpc_api(log_dir, redis_server):
    with silent_api(log_dir, redis_server, MODEL_ID, **LIMITS) as api:
        yield api


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class SilentStreams:
    """One HTTP/2 connection that opens `count` ModelInfer streams at once, HEADERS only, ignoring the server's
    stream limit, and notes how each ends: refused (RST_STREAM), answered with a grpc-status, or left open."""

    def __init__(self, address: str, count: int) -> None:
        host, port = address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.setblocking(False)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.h2.local_settings.max_concurrent_streams = 2**31 - 1  # a client's own limit: never in the way
        self.open: set[int] = set()
        self.ended: dict[int, str] = {}  # stream id: "refused" or the grpc-status
        self.closed = False
        for stream_id in range(1, 2 * count, 2):  # sent before the server's SETTINGS are read: its limit is unknown
            self.h2.send_headers(stream_id, [
                (":method", "POST"), (":scheme", "http"), (":path", INFER), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers"),
            ])  # fmt: skip
            self.open.add(stream_id)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        try:
            if data:
                self.sock.sendall(data)
        except (BlockingIOError, OSError):
            pass

    def read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for event in events:
            if isinstance(event, h2.events.StreamReset):
                self._end(event.stream_id, "refused")
            elif isinstance(event, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                status = dict(event.headers).get("grpc-status")
                if status is not None:
                    self._end(event.stream_id, status)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self._flush()

    def _end(self, stream_id: int, how: str) -> None:
        if stream_id in self.open:
            self.open.discard(stream_id)
            self.ended[stream_id] = how


def _watch(connections: list[SilentStreams], seconds: float) -> None:
    """Read every connection until each is closed or has no open stream left, or `seconds` pass."""
    selector = selectors.DefaultSelector()
    for conn in connections:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(c.open and not c.closed for c in connections):
        for key, _ in selector.select(timeout=0.1):
            key.data.read()
    selector.close()


def _probe_server_live(address: str, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ServerLive(pb.ServerLiveRequest(), timeout=5)  # connected before the flood
        while not stop.is_set():
            started = time.monotonic()
            try:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
                latencies.append(time.monotonic() - started)
            except grpc.RpcError as exc:
                failures.append(exc.code().name)
            time.sleep(0.05)


def test_streams_that_never_send_their_message_are_refused_or_ended(grpc_api):
    address, pid = grpc_api.extra["grpc"], grpc_api.process.pid
    stop, latencies, failures = threading.Event(), [], []
    probe = threading.Thread(target=_probe_server_live, args=(address, stop, latencies, failures), daemon=True)
    probe.start()
    time.sleep(0.5)
    rss_before = _rss_mb(pid)
    connections = [SilentStreams(address, 200) for _ in range(16)]  # 3,200 streams, 16 connections
    started = time.monotonic()
    _watch(connections, seconds=LIMITS["body_total_timeout"] + 6)
    took = time.monotonic() - started
    rss_after = _rss_mb(pid)
    stop.set()
    probe.join(10)
    for conn in connections:
        conn.sock.close()
    left_open = sum(len(c.open) for c in connections if not c.closed)
    outcomes = [how for c in connections for how in c.ended.values()]
    print(f"\n{len(outcomes)} of 3200 streams ended in {took:.1f} s: {outcomes.count('refused')} refused, "
          f"{outcomes.count('4')} DEADLINE_EXCEEDED; ServerLive max {max(latencies, default=0) * 1000:.0f} ms over "
          f"{len(latencies)} calls, {len(failures)} failed; API RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    assert left_open == 0, f"{left_open} streams still open after {took:.1f} s (ended: {len(outcomes)})"
    deadline_exceeded = outcomes.count(str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0]))
    assert deadline_exceeded <= 16 * LIMITS["grpc_max_streams"], deadline_exceeded  # only the admitted waited
    assert deadline_exceeded > 0 and outcomes.count("refused") > 0, sorted(set(outcomes))
    assert not failures and latencies and max(latencies) < 1.0, (failures, max(latencies, default=None))
    assert rss_after - rss_before < 50, f"API RSS {rss_before:.0f} -> {rss_after:.0f} MiB"


def test_connections_past_the_cap_are_refused(grpc_api):
    address = grpc_api.extra["grpc"]
    connections = [SilentStreams(address, 1) for _ in range(LIMITS["grpc_max_connections"] + 16)]
    _watch(connections, seconds=1.5)  # shorter than the message deadline: only refusals end anything
    closed = sum(c.closed for c in connections)
    for conn in connections:
        conn.sock.close()
    assert closed >= 16, f"{closed} of {len(connections)} connections closed"


def test_a_million_bytes_elements_are_refused_on_their_shape_without_stalling_health(grpc_api):
    count = 1_000_000
    request = pb.ModelInferRequest(model_name=grpc_model_name(MODEL_ID))
    for name, element in (("query", b"q"), ("passage", b"")):
        request.inputs.add(name=name, datatype="BYTES", shape=[count])
        request.raw_input_contents.append((struct.pack("<I", len(element)) + element) * count)
    channel = grpc.insecure_channel(grpc_api.extra["grpc"], options=[("grpc.max_send_message_length", -1)])
    with health_probes(grpc_api.extra["url"]) as latencies, channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
            assert "1000000 passages sent; at most 512" in refused.value.details()
    print(f"\nhealth during three 1,000,000-element calls: max {max(latencies) * 1000:.0f} ms over {len(latencies)}")
    assert max(latencies) < 0.5, f"slowest health probe {max(latencies):.2f} s"


def test_rpcs_not_served_answer_unimplemented_without_a_traceback(grpc_api):
    with grpc.insecure_channel(grpc_api.extra["grpc"]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for call in (lambda: stub.ModelConfig(pb.ModelConfigRequest(name="m"), timeout=10),
                     lambda: stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)):  # fmt: skip
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED, refused.value.details()
    time.sleep(0.5)
    assert "Traceback" not in grpc_api.log() and "NotImplementedError" not in grpc_api.log()
