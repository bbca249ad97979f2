"""The fault-injecting S3 proxy: byte-exact relaying, fault choice, and s3fs behind it.

The s3fs tests double as a record of how s3fs / aiobotocore / aiohttp react to each fault:
they retry 500, 503 and resets on their own, and a delay beyond the read timeout surfaces as
botocore's ``ReadTimeoutError``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import botocore.exceptions
import pytest
import s3fs

from tests.support.flaky_proxy import FaultPicker, flaky_proxy
from tests.support.s3server import S3Server

pytestmark = pytest.mark.faults

log = logging.getLogger(__name__)

MIB = 2**20
PART_SIZE = 5 * MIB  # S3's minimum multipart part size
SOCKET_TIMEOUT_S = 5.0
Step = tuple[str, bytes]  # ("send" | "recv", payload) or ("close", b"")


def _payload(size: int, salt: int = 0) -> bytes:
    """Deterministic, non-repeating-per-part bytes, so misplaced parts would be noticed."""
    block = bytes((i * 31 + salt) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def _proxied_fs(server: S3Server, endpoint_url: str, **kwargs: object) -> s3fs.S3FileSystem:
    """An s3fs filesystem with the server's credentials that talks to ``endpoint_url``."""
    return s3fs.S3FileSystem(
        key=server.access_key_id,
        secret=server.secret_access_key,
        endpoint_url=endpoint_url,
        client_kwargs={"region_name": server.region},
        skip_instance_cache=True,
        **kwargs,
    )


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh bucket on the session S3 server, created directly (not through a proxy)."""
    name = f"flaky-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(name)
    return name


# --- byte-exact relaying against a scripted upstream -----------------------------------------


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    """Read exactly ``count`` bytes (fails the test on EOF or timeout)."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"peer closed after {len(data)} of {count} bytes: {data!r}"
        data += chunk
    return data


def _recv_until_eof(sock: socket.socket) -> bytes:
    """Read until the peer closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _run_script(sock: socket.socket, script: list[Step]) -> list[bytes]:
    """Play ``script`` on ``sock``: send payloads, receive and return what should arrive."""
    received = []
    for action, payload in script:
        if action == "send":
            sock.sendall(payload)
        elif action == "recv":
            received.append(_recv_exact(sock, len(payload)))
        else:
            received.append(_recv_until_eof(sock))
    return received


def _mirror(script: list[Step]) -> list[Step]:
    """The other side of a conversation: its sends are our receives and vice versa."""
    flip = {"send": "recv", "recv": "send", "close": "close"}
    return [(flip[action], payload) for action, payload in script]


@pytest.fixture
def scripted_upstream() -> Iterator[tuple[str, list[Step], list[bytes]]]:
    """A one-connection upstream that plays a script the test fills in before connecting.

    Yields its URL, the (initially empty) script to fill, and the list of byte strings it
    received, for comparison with what the client sent.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(SOCKET_TIMEOUT_S)
    script: list[Step] = []
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(SOCKET_TIMEOUT_S)
            received.extend(_run_script(conn, [s for s in script if s[0] != "close"]))

    thread = threading.Thread(target=serve, name="scripted-upstream", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", script, received
    finally:
        thread.join(SOCKET_TIMEOUT_S)
        listener.close()


def test_relays_requests_and_responses_byte_for_byte(scripted_upstream) -> None:
    """Chunked bodies with extensions and trailers, HEAD, 100-continue and a close-delimited
    response all pass unchanged over one keep-alive connection, Host header included."""
    upstream_url, script, upstream_received = scripted_upstream
    chunked_put = (
        b"PUT /bucket/key?partNumber=1 HTTP/1.1\r\nHost: signed-host.invalid:1234\r\n"
        b"X-Amz-Date: 20240101T000000Z\r\ncontent-encoding: aws-chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
    )
    chunked_reply = (
        b'HTTP/1.1 200 OK\r\nETag: "e1"\r\nTransfer-Encoding: chunked\r\n\r\n'
        b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    head = b"HEAD /bucket/key HTTP/1.1\r\nHost: h\r\n\r\n"
    head_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"  # no body follows
    continue_head = (
        b"PUT /bucket/k2 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    continue_reply = b"HTTP/1.1 100 Continue\r\n\r\n"
    final_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    get = b"GET /bucket/k2 HTTP/1.1\r\nHost: h\r\n\r\n"
    eof_reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    client_script: list[Step] = [
        ("send", chunked_put),
        ("recv", chunked_reply),
        ("send", head),
        ("recv", head_reply),
        ("send", continue_head),
        ("recv", continue_reply),
        ("send", b"body"),
        ("recv", final_reply),
        ("send", get),
        ("close", b""),
    ]
    script.extend(_mirror(client_script))
    script[-1:] = [("send", eof_reply), ("close", b"")]

    with flaky_proxy(upstream_url, fault_rate=0.0) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), SOCKET_TIMEOUT_S)
        with client:
            client_received = _run_script(client, client_script)
    stats = proxy.stats.snapshot()

    assert upstream_received == [chunked_put, head, continue_head, b"body", get]
    assert client_received == [chunked_reply, head_reply, continue_reply, final_reply, eof_reply]
    assert stats["requests"] == stats["forwarded"] == stats["completed"] == 4


# --- fault choice ----------------------------------------------------------------------------


def _decisions(picker: FaultPicker, count: int) -> list[str | None]:
    """The picker's decisions for ``count`` GET requests to one path."""
    return [picker.pick("GET", "/b/k") for _ in range(count)]


def test_fault_choice_is_seeded_and_filtered() -> None:
    """Same seed, same decisions; the rate is honoured; methods and path_filter exclude."""
    modes = ("500", "503", "reset")
    first = _decisions(FaultPicker(0.3, modes, 7, None, None), 2000)
    assert first == _decisions(FaultPicker(0.3, modes, 7, None, None), 2000)
    assert first != _decisions(FaultPicker(0.3, modes, 8, None, None), 2000)
    assert 0.25 < sum(d is not None for d in first) / len(first) < 0.35
    assert {d for d in first if d} == set(modes)

    picker = FaultPicker(1.0, ("500",), 0, {"put"}, "/faulty/")
    assert picker.pick("PUT", "/faulty/key?uploads") == "500"
    assert picker.pick("GET", "/faulty/key") is None
    assert picker.pick("PUT", "/other/key") is None
    picker.set_rate(0.0)
    assert picker.pick("PUT", "/faulty/key") is None
    with pytest.raises(ValueError):
        FaultPicker(0.1, ("teapot",), 0, None, None)


def _get(url: str) -> tuple[int, bytes]:
    """Status and body of an unsigned GET (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=SOCKET_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_injected_errors_are_s3_xml_and_rate_changes_at_runtime(s3: S3Server) -> None:
    """500 and 503 carry S3 error codes; path_filter spares other paths; set_fault_rate works."""
    with flaky_proxy(s3.endpoint_url, 1.0, ("500",), path_filter="/faulty") as proxy:
        status, body = _get(f"{proxy.endpoint_url}/faulty/key")
        assert status == 500 and b"<Code>InternalError</Code>" in body
        assert b"flaky-proxy" not in _get(f"{proxy.endpoint_url}/other/key")[1]
        proxy.set_fault_rate(0.0)
        assert b"flaky-proxy" not in _get(f"{proxy.endpoint_url}/faulty/key")[1]
        assert proxy.stats.injected == {"500": 1}
        assert proxy.stats.forwarded == 2
    with flaky_proxy(s3.endpoint_url, 1.0, ("503",)) as proxy:
        status, body = _get(f"{proxy.endpoint_url}/any")
        assert status == 503 and b"<Code>SlowDown</Code>" in body


# --- s3fs through the proxy ------------------------------------------------------------------


def _proxy_threads(port: int) -> list[str]:
    """Names of live threads belonging to the proxy on ``port``."""
    return [t.name for t in threading.enumerate() if t.name.startswith(f"flaky-proxy-{port}-")]


def test_s3fs_round_trip_without_faults(s3: S3Server, bucket: str) -> None:
    """Signed PUT, GET, LIST, HEAD and both multipart paths work through the proxy, and
    closing it leaves no thread or listening port behind."""
    small, big = _payload(1000), _payload(12 * MIB, salt=1)
    with flaky_proxy(s3.endpoint_url, fault_rate=0.0) as proxy:
        fs = _proxied_fs(s3, proxy.endpoint_url)
        fs.mkdir(f"{bucket}-new")  # CreateBucket, signed through the proxy
        fs.pipe(f"{bucket}/small", small)
        fs.pipe(f"{bucket}/parallel-mpu", big, chunksize=PART_SIZE)  # 3 parts, concurrently
        with fs.open(f"{bucket}/streamed-mpu", "wb", block_size=PART_SIZE) as f:
            for offset in range(0, len(big), MIB):  # 3 parts, one after another
                f.write(big[offset : offset + MIB])
        assert fs.cat(f"{bucket}/small") == small
        assert fs.cat(f"{bucket}/parallel-mpu") == big
        assert fs.cat(f"{bucket}/streamed-mpu") == big
        assert (
            fs.cat_file(f"{bucket}/streamed-mpu", start=PART_SIZE - 3, end=PART_SIZE + 3)
            == (big[PART_SIZE - 3 : PART_SIZE + 3])
        )
        assert sorted(fs.ls(bucket, detail=False)) == [
            f"{bucket}/{name}" for name in ("parallel-mpu", "small", "streamed-mpu")
        ]
        assert fs.info(f"{bucket}/streamed-mpu")["size"] == len(big)
        fs.rmdir(f"{bucket}-new")  # DeleteBucket
    stats, port = proxy.stats.snapshot(), proxy.port  # final: close() joined every thread

    log.info("fault-free round trip: %s", stats)
    assert stats["injected"] == {}
    assert stats["requests"] == stats["forwarded"] == stats["completed"]
    assert stats["methods"]["POST"] >= 4  # create + complete, for both multipart uploads
    assert stats["methods"]["PUT"] >= 8  # bucket, small object, six parts
    assert stats["methods"]["DELETE"] >= 1
    assert _proxy_threads(port) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_s3fs_retries_through_errors_and_resets(s3: S3Server, bucket: str) -> None:
    """At a 30 % fault rate, s3fs with botocore's default retries still writes, reads and
    lists correctly, and every fault mode was actually exercised."""
    objects = {f"{bucket}/obj-{i:02d}": _payload(1000 + i, salt=i) for i in range(10)}
    big = _payload(11 * MIB, salt=99)
    started = time.monotonic()
    with flaky_proxy(s3.endpoint_url, 0.3, ("500", "503", "reset"), seed=1234) as proxy:
        fs = _proxied_fs(s3, proxy.endpoint_url)
        for path, data in objects.items():
            fs.pipe(path, data)
            assert fs.cat(path) == data
            assert fs.info(path)["size"] == len(data)
        with fs.open(f"{bucket}/big", "wb", block_size=PART_SIZE) as f:
            for offset in range(0, len(big), MIB):  # 2 parts
                f.write(big[offset : offset + MIB])
        assert fs.cat(f"{bucket}/big") == big
        fs.invalidate_cache()
        assert sorted(fs.ls(bucket, detail=False)) == sorted([*objects, f"{bucket}/big"])
    stats = proxy.stats.snapshot()

    log.info("30%% faults: %s in %.1fs", stats, time.monotonic() - started)
    assert all(stats["injected"].get(mode, 0) > 0 for mode in ("500", "503", "reset"))
    assert stats["requests"] == stats["forwarded"] + sum(stats["injected"].values())


def test_delay_beyond_read_timeout_fails_with_timeout(s3: S3Server, bucket: str) -> None:
    """A request held longer than the client's read timeout raises ReadTimeoutError, and
    closing the proxy cuts the pending delay short instead of waiting it out.

    ``total_max_attempts`` (not ``max_attempts``, which in botocore's legacy retry mode
    counts *retries*) and ``fs.retries = 1`` make exactly one attempt.
    """
    s3.filesystem().pipe(f"{bucket}/slow", b"data")
    config = {"read_timeout": 1, "connect_timeout": 1, "retries": {"total_max_attempts": 1}}
    with flaky_proxy(s3.endpoint_url, 1.0, ("delay",), delay_s=3.0) as proxy:
        fs = _proxied_fs(s3, proxy.endpoint_url, config_kwargs=config)
        fs.retries = 1  # s3fs would otherwise retry ReadTimeoutError (an HTTPClientError) 5x
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            fs.cat_file(f"{bucket}/slow")
        failed_after = time.monotonic() - started
        assert proxy.stats.injected == {"delay": 1}
        closing = time.monotonic()
    closed_after = time.monotonic() - closing

    log.info("timed out after %.2fs; proxy closed in %.2fs", failed_after, closed_after)
    assert 1.0 <= failed_after < 3.0
    assert closed_after < 1.0
