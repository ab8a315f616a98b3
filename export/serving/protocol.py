"""The HTTP/1.1 connection: uvicorn's httptools protocol with a bound on the request head.

uvicorn's fast parser (httptools) accepts request heads of any size and waits for them forever: a
client can send a 64 MB header (the server buffers it all) or trickle one header byte a second
and hold the connection (slowloris). uvicorn's other parser (h11) has a size limit but no time
limit, and is slower. :func:`protocol_class` returns a subclass of uvicorn's ``HttpToolsProtocol``
(``uvicorn.Config(http=...)`` takes a protocol class) that adds, per request head:

* a size limit: once more than ``max_header_bytes`` bytes arrived without the head being
  complete, or the parsed request line and headers exceed it (a whole oversized head can arrive in
  one read), the answer is ``431 Request Header Fields Too Large`` and the connection closes;
* a time limit: the head must be complete within ``header_timeout_s`` seconds of the connection
  opening or of its first byte (keep-alive requests), else ``408 Request Timeout`` and close.

Both answers are JSON ``{"error": ...}`` like every other client error. The body has its own
limits (``kcnn.export.serving.requests.read_body``: size and read timeout).

The same class sends each response's head and body in one write (:class:`_CoalescingTransport`).
"""
from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kcnn.export.checks import check_positive

#: Largest request line + headers accepted (bytes); nginx's default is 8 KB per line, 32 KB total.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
#: Seconds a client has to send the whole request head (nginx ``client_header_timeout``: 60).
DEFAULT_HEADER_TIMEOUT_S = 10.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def protocol_class(max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
                   header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
                   coalesce_writes: bool = True) -> type:
    """A ``HttpToolsProtocol`` subclass enforcing these request-head limits (see the module doc);
    ``coalesce_writes=False`` sends each of uvicorn's writes on its own (for comparisons)."""
    limits = {"max_header_bytes": check_positive("max_header_bytes", max_header_bytes, integer=True),
              "header_timeout_s": check_positive("header_timeout_s", header_timeout_s),
              "coalesce_writes": bool(coalesce_writes)}
    return type("BoundedHeadProtocol", (_BoundedHead,), limits)


class _CoalescingTransport:
    """The connection's transport, with the writes of one event-loop step sent as one.

    uvicorn writes a response's head and its body separately: two ``send`` calls and, with
    TCP_NODELAY, two packets per small response. Writes are collected until the loop's next step
    (or until they exceed :data:`_FLUSH_BYTES`) and sent together; everything else is the real
    transport's.
    """

    _FLUSH_BYTES = 64 * 1024

    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._pending, self._pending_bytes = [], 0

    def write(self, data):
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self._FLUSH_BYTES:
            self._flush()

    def _flush(self):
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, chunks):
        for chunk in chunks:
            self.write(chunk)

    def close(self):
        self._flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _BoundedHead(HttpToolsProtocol):
    max_header_bytes = DEFAULT_MAX_HEADER_BYTES
    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._parsed_head_bytes = 0  # the current head's URL and header lines, as parsed
        self._in_head = True  # until the first request's head is complete
        self._head_timer = None

    coalesce_writes = True

    # The head's clock starts when the connection opens and again at each new request.
    def connection_made(self, transport):
        if self.coalesce_writes:
            transport = _CoalescingTransport(transport, self.loop)
        super().connection_made(transport)
        self._start_head_clock()

    def on_message_begin(self):
        super().on_message_begin()
        self._parsed_head_bytes = 0
        if not self._in_head:
            self._in_head, self._head_bytes = True, 0
            self._start_head_clock()

    def on_url(self, url):
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name, value):
        self._count_parsed(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count_parsed(self, size):
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > self.max_header_bytes:
            # Stops the parser: httptools raises HttpParserCallbackError, which uvicorn answers
            # through send_400_response (below: a 431 instead).
            raise ValueError("request head too large")

    def send_400_response(self, msg):
        if self._parsed_head_bytes > self.max_header_bytes:
            self._refuse_head_too_large()
        else:
            super().send_400_response(msg)

    def on_headers_complete(self):
        self._in_head = False
        self._stop_head_clock()
        super().on_headers_complete()

    def connection_lost(self, exc):
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data):
        # Counted before parsing; the verdict comes after, so a chunk that completes the head
        # (and carries body bytes with it) is never refused for its body.
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse_head_too_large()

    def _refuse_head_too_large(self):
        self._refuse(431, f"request line and headers exceed {self.max_header_bytes} bytes")

    def _start_head_clock(self):
        self._stop_head_clock()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _stop_head_clock(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self):
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(408, f"request head not complete within {self.header_timeout_s:g} s")
            else:  # nothing was asked: close quietly, as for an idle keep-alive connection
                self.transport.close()

    def _refuse(self, status: int, message: str):
        self._stop_head_clock()
        body = json.dumps({"error": message}).encode()
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)))
        self.transport.write(head + body)
        self.transport.close()
