"""A loopback HTTP reverse proxy that injects S3-style faults into a fraction of requests.

Tests point an S3 client (s3fs / botocore) at :attr:`FlakyProxy.endpoint_url` instead of the
real server. Each request is relayed byte for byte to the upstream endpoint, so SigV4
signatures (which cover the ``Host`` header the client chose, i.e. the proxy's address) stay
valid: the proxy never rewrites or adds a header. A seeded random draw per eligible request
decides whether to forward it or to inject one of these faults instead:

``500``
    ``500 Internal Server Error`` with an S3 XML error body (``InternalError``).
``503``
    ``503 Slow Down`` with an S3 XML error body (``SlowDown``), S3's throttling answer.
``403``
    ``403 Forbidden`` with an S3 XML error body (``AccessDenied``), as S3 refuses an object
    the caller's policy does not allow (use with ``path_filter`` to refuse one key).
``reset``
    The connection is aborted with a TCP RST and no response.
``delay``
    The request waits ``delay_s`` seconds before it is forwarded, so a client whose read
    timeout is shorter gives up (and the upstream may still execute it afterwards).

Why a raw-socket proxy rather than an HTTP library: libraries normalise what they relay
(header case and order, de-chunked bodies, added ``User-Agent`` / ``Accept-Encoding``, gzip
decoding). Here each client connection gets one thread and one upstream connection, and bytes
are copied as they arrive; the proxy parses only enough HTTP/1.1 to find where each message
ends, so chunked and ``aws-chunked`` uploads stream through unchanged.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import random
import select
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TRANSIENT_MODES = ("500", "503", "reset", "delay")  # what retries get through
FAULT_MODES = (*TRANSIENT_MODES, "403")
ACCEPT_POLL_S = 0.1
UPSTREAM_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 5.0
COPY_CHUNK = 64 * 1024
MAX_LINE = 64 * 1024
MAX_HEADER_LINES = 200

# Fault mode -> (status line reason, S3 error code, message), as S3 itself words them.
ERROR_REPLIES = {
    "500": ("Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": ("Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": ("Forbidden", "AccessDenied", "Access Denied"),
}

Write = Callable[[bytes], None]


class ProtocolError(Exception):
    """A peer sent something that is not HTTP/1.1 as this proxy understands it, or hung up."""


@dataclass(frozen=True)
class Framing:
    """Where a message body ends: ``kind`` is none, length, chunked or eof (close-delimited)."""

    kind: str
    length: int = 0


NO_BODY = Framing("none")


@dataclass(frozen=True)
class Message:
    """One HTTP message head: its raw bytes (relayed unchanged) and parsed fields."""

    raw: bytes
    start_line: str
    headers: dict[str, str]

    def header(self, name: str) -> str:
        """The (comma-joined) value of header ``name``, lowercased; empty if absent."""
        return self.headers.get(name, "").lower()

    def wants_close(self) -> bool:
        """Whether this message asks to close the connection after the exchange."""
        return "close" in self.header("connection")


@dataclass(frozen=True)
class Request:
    """A request head with its method, target (path and query) and body framing."""

    message: Message
    method: str
    target: str
    framing: Framing

    def expects_continue(self) -> bool:
        """True if the client waits for ``100 Continue`` before sending its body.

        botocore adds ``Expect: 100-continue`` to PutObject/UploadPart bodies of 1 MB or more,
        and aiohttp honours it, so this is the normal case for large uploads.
        """
        return self.message.header("expect") == "100-continue"


class ProxyStats:
    """Thread-safe counters of what the proxy saw and did.

    ``requests`` counts request heads received, ``forwarded`` those sent upstream,
    ``completed`` those whose whole response reached the client (a delayed request whose
    client gave up is forwarded but not completed), ``injected`` faults per mode and
    ``methods`` requests per HTTP method.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._forwarded = 0
        self._completed = 0
        self._injected: Counter[str] = Counter()
        self._methods: Counter[str] = Counter()

    def record_request(self, method: str) -> None:
        """Count one received request."""
        with self._lock:
            self._requests += 1
            self._methods[method] += 1

    def record_fault(self, mode: str) -> None:
        """Count one injected fault of ``mode``."""
        with self._lock:
            self._injected[mode] += 1

    def record_forwarded(self) -> None:
        """Count one request sent upstream."""
        with self._lock:
            self._forwarded += 1

    def record_completed(self) -> None:
        """Count one response relayed in full to the client."""
        with self._lock:
            self._completed += 1

    @property
    def requests(self) -> int:
        """Request heads received so far."""
        with self._lock:
            return self._requests

    @property
    def forwarded(self) -> int:
        """Requests sent upstream so far (including delayed ones)."""
        with self._lock:
            return self._forwarded

    @property
    def completed(self) -> int:
        """Responses relayed in full to the client so far."""
        with self._lock:
            return self._completed

    @property
    def injected(self) -> dict[str, int]:
        """A copy of the injected-fault counts per mode."""
        with self._lock:
            return dict(self._injected)

    @property
    def methods(self) -> dict[str, int]:
        """A copy of the received-request counts per HTTP method."""
        with self._lock:
            return dict(self._methods)

    def snapshot(self) -> dict[str, object]:
        """All counters at one instant, for logging and assertions."""
        with self._lock:
            return {
                "requests": self._requests,
                "forwarded": self._forwarded,
                "completed": self._completed,
                "injected": dict(self._injected),
                "methods": dict(self._methods),
            }


class FaultPicker:
    """Decides per request whether to inject a fault, and which, from a seeded RNG.

    Every eligible request (method in ``methods`` and ``path_filter`` in its target, when
    those are given) consumes exactly two draws, the roll and the mode, whatever the rate,
    so the decision sequence depends only on the seed and the order requests arrive in.
    """

    def __init__(
        self,
        fault_rate: float,
        modes: Collection[str],
        seed: int,
        methods: Collection[str] | None,
        path_filter: str | None,
    ) -> None:
        unknown = set(modes) - set(FAULT_MODES)
        if not modes or unknown:
            raise ValueError(f"modes must be a non-empty subset of {FAULT_MODES}, got {modes}")
        self._modes = tuple(modes)
        self._methods = None if methods is None else {m.upper() for m in methods}
        self._path_filter = path_filter
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rate = _checked_rate(fault_rate)

    def set_rate(self, fault_rate: float) -> None:
        """Change the fraction of eligible requests that get a fault, from now on."""
        with self._lock:
            self._rate = _checked_rate(fault_rate)

    def eligible(self, method: str, target: str) -> bool:
        """Whether faults may hit this request at all."""
        if self._methods is not None and method not in self._methods:
            return False
        return self._path_filter is None or self._path_filter in target

    def pick(self, method: str, target: str) -> str | None:
        """The fault mode to inject into this request, or None to forward it untouched."""
        if not self.eligible(method, target):
            return None
        with self._lock:
            roll = self._rng.random()
            mode = self._rng.choice(self._modes)
            return mode if roll < self._rate else None


def _checked_rate(rate: float) -> float:
    """``rate`` if it is a fraction in [0, 1], else ValueError."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault_rate must be within [0, 1], got {rate}")
    return rate


# --- HTTP/1.1 framing ------------------------------------------------------------------------


def _read_line(reader: io.BufferedReader) -> bytes:
    """One CRLF-terminated line including its terminator; ProtocolError on EOF or overlong."""
    line = reader.readline(MAX_LINE)
    if len(line) >= MAX_LINE:
        raise ProtocolError("line too long")
    if not line.endswith(b"\n"):
        raise ProtocolError("connection closed mid-line")
    return line


def read_message(reader: io.BufferedReader) -> Message | None:
    """Read one message head (start line and headers); None on a clean EOF before it starts."""
    if not reader.peek(1):
        return None
    first = _read_line(reader)
    lines = [first]
    headers: dict[str, str] = {}
    while True:
        line = _read_line(reader)
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(lines) > MAX_HEADER_LINES:
            raise ProtocolError("too many header lines")
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Message(b"".join(lines), first.decode("latin-1").strip(), headers)


def _content_length(message: Message) -> int | None:
    """The Content-Length header as a number, None if absent; ProtocolError if malformed."""
    value = message.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value.split(",")[0])
    except ValueError as exc:
        raise ProtocolError(f"bad Content-Length {value!r}") from exc


def request_framing(message: Message) -> Framing:
    """Body framing of a request: chunked, Content-Length, or no body (RFC 9112 6.3)."""
    if "chunked" in message.header("transfer-encoding"):
        return Framing("chunked")
    length = _content_length(message)
    return Framing("length", length) if length else NO_BODY


def response_framing(method: str, status: int, message: Message) -> Framing:
    """Body framing of a response to ``method``: none, chunked, length, or until EOF."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return NO_BODY
    if "chunked" in message.header("transfer-encoding"):
        return Framing("chunked")
    length = _content_length(message)
    return Framing("eof") if length is None else Framing("length", length)


def parse_request(message: Message) -> Request:
    """Split the request line into method and target and work out the body framing."""
    parts = message.start_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(f"bad request line {message.start_line!r}")
    return Request(message, parts[0].upper(), parts[1], request_framing(message))


def status_of(message: Message) -> int:
    """The status code from a response's status line."""
    parts = message.start_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {message.start_line!r}")
    return int(parts[1])


def _copy_exact(reader: io.BufferedReader, write: Write, count: int) -> None:
    """Copy exactly ``count`` bytes as they arrive; ProtocolError if the peer hangs up first."""
    while count > 0:
        data = reader.read1(min(count, COPY_CHUNK))
        if not data:
            raise ProtocolError(f"connection closed with {count} body bytes outstanding")
        write(data)
        count -= len(data)


def _copy_chunked(reader: io.BufferedReader, write: Write) -> None:
    """Copy a chunked body verbatim: size lines (with extensions), data, and trailers."""
    while True:
        line = _read_line(reader)
        write(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError(f"bad chunk size line {line!r}") from exc
        if size == 0:
            break
        _copy_exact(reader, write, size + 2)  # the chunk and its CRLF
    while True:  # trailer fields, then the empty line
        line = _read_line(reader)
        write(line)
        if line in (b"\r\n", b"\n"):
            return


def _copy_until_eof(reader: io.BufferedReader, write: Write) -> None:
    """Copy a close-delimited body until the peer closes."""
    while data := reader.read1(COPY_CHUNK):
        write(data)


def copy_body(reader: io.BufferedReader, write: Write, framing: Framing) -> None:
    """Stream one message body from ``reader`` to ``write`` according to ``framing``."""
    if framing.kind == "length":
        _copy_exact(reader, write, framing.length)
    elif framing.kind == "chunked":
        _copy_chunked(reader, write)
    elif framing.kind == "eof":
        _copy_until_eof(reader, write)


def _discard(_: bytes) -> None:
    """A body sink that drops what it is given (draining a request we answer ourselves)."""


def error_response(mode: str, request: Request, request_id: str, close: bool) -> bytes:
    """The complete S3-style error response for fault ``mode`` (500, 503 or 403) to
    ``request``."""
    reason, code, message = ERROR_REPLIES[mode]
    resource = request.target.split("?", 1)[0]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    if request.method == "HEAD":
        body = b""
    head = [
        f"HTTP/1.1 {mode} {reason}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"x-amz-request-id: {request_id}",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --- connections -----------------------------------------------------------------------------


def _tcp_socket(sock: socket.socket) -> socket.socket:
    """Disable Nagle: heads and bodies go out as separate writes and must not wait for ACKs."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _stale(sock: socket.socket) -> bool:
    """Whether an idle upstream connection was closed (or sent unsolicited bytes) meanwhile."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class Connection:
    """One client connection, its lazily opened upstream connection, and their readers.

    Another thread may call :meth:`interrupt` at shutdown; ``shutdown(2)`` (unlike ``close``)
    wakes a thread blocked reading either socket.
    """

    def __init__(self, client: socket.socket, upstream_addr: tuple[str, int]) -> None:
        self.client = _tcp_socket(client)
        self.client_reader: io.BufferedReader = client.makefile("rb")
        self._upstream_addr = upstream_addr
        self._upstream: socket.socket | None = None
        self._upstream_reader: io.BufferedReader | None = None
        self._lock = threading.Lock()
        self._closed = False

    def upstream(self) -> tuple[socket.socket, io.BufferedReader]:
        """The upstream socket and reader, reconnecting if there is none or it went stale."""
        if self._upstream is not None and _stale(self._upstream):
            log.debug("upstream connection went stale; reconnecting")
            self.close_upstream()
        with self._lock:
            if self._closed:
                raise ProtocolError("proxy is shutting down")
            if self._upstream is None:
                sock = socket.create_connection(self._upstream_addr, timeout=UPSTREAM_TIMEOUT_S)
                self._upstream = _tcp_socket(sock)
                self._upstream_reader = sock.makefile("rb")
            assert self._upstream_reader is not None
            return self._upstream, self._upstream_reader

    def close_upstream(self) -> None:
        """Close the upstream connection (the next request opens a new one)."""
        with self._lock:
            _close(self._upstream_reader, self._upstream)
            self._upstream = self._upstream_reader = None

    def reset_client(self) -> None:
        """Abort the client connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
        with contextlib.suppress(OSError):
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def interrupt(self) -> None:
        """Wake the serving thread from any blocking read or write (called at shutdown)."""
        with self._lock:
            self._closed = True
            for sock in (self.client, self._upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close both connections; safe to call more than once."""
        self.close_upstream()
        with self._lock:
            self._closed = True
            _close(self.client_reader, self.client)


def _close(reader: io.BufferedReader | None, sock: socket.socket | None) -> None:
    """Close a socket's reader first: the fd only really closes once both are closed."""
    for closable in (reader, sock):
        if closable is not None:
            with contextlib.suppress(OSError):
                closable.close()


# --- the proxy -------------------------------------------------------------------------------


class FlakyProxy:
    """The running proxy: an accept thread plus one thread per client connection.

    Use :func:`flaky_proxy` rather than constructing this directly; it guarantees
    :meth:`close` runs.
    """

    def __init__(self, upstream_url: str, picker: FaultPicker, delay_s: float) -> None:
        self._upstream_addr = _upstream_address(upstream_url)
        self._picker = picker
        self._delay_s = delay_s
        self.stats = ProxyStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._threads: list[threading.Thread] = []
        self._request_ids = itertools.count(1)
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"flaky-proxy-{self.port}-accept", daemon=True
        )

    def start(self) -> None:
        """Start accepting connections."""
        self._accept_thread.start()
        log.info("flaky proxy %s -> %s:%d", self.endpoint_url, *self._upstream_addr)

    def set_fault_rate(self, fault_rate: float) -> None:
        """Change the fault rate for requests arriving from now on (thread-safe)."""
        self._picker.set_rate(fault_rate)

    def close(self) -> None:
        """Stop accepting, interrupt every connection (and any delay), and join all threads."""
        self._stop.set()
        self._accept_thread.join(JOIN_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            connection.interrupt()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
        alive = [t.name for t in [self._accept_thread, *threads] if t.is_alive()]
        if alive:
            log.warning("flaky proxy threads still running after close: %s", alive)
        log.info("flaky proxy %s closed; %s", self.endpoint_url, self.stats.snapshot())

    def _accept_loop(self) -> None:
        """Accept clients until stopped, one serving thread each."""
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stop.is_set():
                    log.exception("flaky proxy accept failed")
                return
            client.settimeout(None)
            self._spawn(Connection(client, self._upstream_addr))

    def _spawn(self, connection: Connection) -> None:
        """Register ``connection`` and start its serving thread, forgetting finished ones."""
        thread = threading.Thread(
            target=self._serve,
            args=(connection,),
            name=f"flaky-proxy-{self.port}-conn",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            self._connections.add(connection)
        thread.start()

    def _serve(self, connection: Connection) -> None:
        """Handle requests on one client connection until either side closes it."""
        try:
            while not self._stop.is_set():
                message = read_message(connection.client_reader)
                if message is None or not self._handle(connection, parse_request(message)):
                    break
        except (OSError, ProtocolError) as exc:
            log.debug("flaky proxy connection ended: %r", exc)
        finally:
            connection.close()
            with self._lock:
                self._connections.discard(connection)

    def _handle(self, connection: Connection, request: Request) -> bool:
        """Answer one request, faulty or forwarded; returns whether to keep the connection."""
        self.stats.record_request(request.method)
        mode = self._picker.pick(request.method, request.target)
        log.debug("%s %s -> %s", request.method, request.target, mode or "forward")
        if mode is None:
            return self._forward(connection, request)
        self.stats.record_fault(mode)
        if mode == "delay":
            return not self._stop.wait(self._delay_s) and self._forward(connection, request)
        body_pending = request.expects_continue()
        if not body_pending:  # read the body so the client sees our answer, not a failed send
            copy_body(connection.client_reader, _discard, request.framing)
        if mode == "reset":
            connection.reset_client()
            return False
        request_id = f"flaky-proxy-{next(self._request_ids)}"
        connection.client.sendall(error_response(mode, request, request_id, body_pending))
        return not body_pending

    def _forward(self, connection: Connection, request: Request) -> bool:
        """Relay ``request`` upstream and its response back; returns keep-alive.

        With ``Expect: 100-continue`` the body is only relayed once upstream sends
        ``100 Continue`` (which is passed on); if upstream answers straight away instead, the
        client never sends the body, so both connections are closed afterwards.
        """
        upstream, upstream_reader = connection.upstream()
        upstream.sendall(request.message.raw)
        self.stats.record_forwarded()
        body_sent = not request.expects_continue()
        if body_sent:
            copy_body(connection.client_reader, upstream.sendall, request.framing)
        while True:
            response = read_message(upstream_reader)
            if response is None:
                raise ProtocolError("upstream closed without a response")
            status = status_of(response)
            connection.client.sendall(response.raw)
            if not 100 <= status < 200:
                break
            if status == 100 and not body_sent:
                copy_body(connection.client_reader, upstream.sendall, request.framing)
                body_sent = True
        framing = response_framing(request.method, status, response)
        copy_body(upstream_reader, connection.client.sendall, framing)
        self.stats.record_completed()
        keep = body_sent and framing.kind != "eof"
        keep = keep and not response.wants_close() and not request.message.wants_close()
        if not keep:
            connection.close_upstream()
        return keep


def _upstream_address(upstream_url: str) -> tuple[str, int]:
    """Host and port of a plain-HTTP upstream URL (TLS upstreams are not supported)."""
    parts = urlsplit(upstream_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream_url must be http://host[:port], got {upstream_url!r}")
    return parts.hostname, parts.port or 80


@contextlib.contextmanager
def flaky_proxy(
    upstream_url: str,
    fault_rate: float = 0.1,
    modes: Collection[str] = TRANSIENT_MODES,
    seed: int = 0,
    delay_s: float = 3.0,
    methods: Collection[str] | None = None,
    path_filter: str | None = None,
) -> Iterator[FlakyProxy]:
    """Run a fault-injecting proxy in front of ``upstream_url`` for the ``with`` body.

    ``fault_rate`` of the requests whose method is in ``methods`` (all if None) and whose
    target (path and query string) contains ``path_filter`` (all if None) get a fault drawn
    uniformly from ``modes``; ``delay`` mode holds a request ``delay_s`` seconds before
    forwarding it. The draws come from ``random.Random(seed)``. On exit every connection is
    closed and every proxy thread joined.
    """
    picker = FaultPicker(fault_rate, modes, seed, methods, path_filter)
    proxy = FlakyProxy(upstream_url, picker, delay_s)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
