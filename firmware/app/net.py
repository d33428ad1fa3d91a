"""TLS transport for the MQTT client, with client-certificate auth and server verification.

The same code runs on MicroPython (>= 1.23, whose `ssl` module has SSLContext with load_cert_chain and
load_verify_locations taking file paths) and on CPython. The few differences are handled here, not
in the callers:
- MicroPython's SSLContext starts with verify_mode CERT_NONE, CPython's PROTOCOL_TLS_CLIENT with
  CERT_REQUIRED: we always set CERT_REQUIRED, so an unverified server is never accepted.
- CPython's wrap_socket detaches the raw socket (timeouts are set on the TLS socket), MicroPython
  keeps it (timeouts are set on the raw socket).
- A socket can be readable while TLS has no application data yet (TLS 1.3 session tickets), so
  `wait()` confirms readiness with a non-blocking read into a small buffer instead of trusting poll.
"""

import select
import socket
import ssl
import time

WOULD_BLOCK_ERRNOS = (11, 35, 115)  # EAGAIN / EWOULDBLOCK (Linux, BSD), EINPROGRESS (lwIP)


def open_tls(host, port, certfile, keyfile, cafile, timeout=10.0, address=None):
    """Connect to host:port, authenticate with certfile/keyfile, verify the server against cafile.

    `address` ((ip, port)) connects elsewhere while still verifying the server as `host`: a virtual
    device reaching a local broker that holds the endpoint's certificate. The board never passes it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=cafile)
    ctx.load_cert_chain(certfile, keyfile)
    target_host, target_port = address if address else (host, port)
    family, socktype, proto, _unused, target = socket.getaddrinfo(target_host, target_port, 0, socket.SOCK_STREAM)[0]
    raw = socket.socket(family, socktype, proto)
    try:
        raw.settimeout(timeout)
        raw.connect(target)
        # server_hostname both selects SNI and makes the server certificate's name checked.
        sock = ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    return TLSTransport(sock, raw, timeout)


def _elapsed_ms(start):
    """Milliseconds since `start` (a _ticks() value); MicroPython's ticks wrap, hence ticks_diff."""
    if hasattr(time, "ticks_ms"):
        return time.ticks_diff(time.ticks_ms(), start)
    return int(time.monotonic() * 1000) - start


def _ticks():
    return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)


def _would_block(err):
    want_read = getattr(ssl, "SSLWantReadError", None)
    if want_read is not None and isinstance(err, want_read):
        return True
    return bool(err.args) and err.args[0] in WOULD_BLOCK_ERRNOS


class TLSTransport:
    """The transport interface of mqtt.MQTTClient over a TLS socket."""

    def __init__(self, sock, raw, timeout):
        self._sock = sock
        # Where timeouts live: the TLS socket on CPython, the raw socket on MicroPython.
        self._timed = sock if hasattr(sock, "settimeout") else raw
        self._timeout = timeout
        self._buf = b""
        self._eof = False
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def write(self, data):
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            n = self._sock.write(view[sent:])
            sent += n or 0
            if not n:
                raise OSError(11, "TLS write made no progress")

    def read(self, n):
        """Up to n bytes (at least 1), b"" when the peer closed; waits at most the socket timeout."""
        if self._buf:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        if self._eof:
            return b""
        data = self._sock.read(n)
        if data is None:
            raise OSError(110, "TLS read timed out")  # MicroPython's way of saying "nothing yet"
        return data

    def wait(self, timeout):
        """True when read() has data (or EOF) to return, False after `timeout` seconds without."""
        if self._buf or self._eof or self._try_read():
            return True
        # Loop: a readable socket may carry only TLS records without application data (tickets).
        start = _ticks()
        budget = int(timeout * 1000)
        while True:
            remaining = budget - _elapsed_ms(start)
            if remaining <= 0:
                return False
            if self._poll.poll(remaining) and self._try_read():
                return True

    def _try_read(self):
        """Non-blocking read into the buffer; True when it produced data or saw EOF."""
        self._timed.settimeout(0)
        try:
            data = self._sock.read(4096)
        except OSError as err:
            if _would_block(err):
                return False
            raise
        finally:
            self._timed.settimeout(self._timeout)
        if data is None:
            return False
        if data == b"":
            self._eof = True
        self._buf += data
        return True

    def close(self):
        try:
            self._poll.unregister(self._sock)
        except (OSError, KeyError, ValueError):
            pass
        self._sock.close()
