"""Exit 0 when a Kafka broker at HOST PORT answers a metadata request listing itself (or, with a
third argument N, listing at least N live brokers: a cluster that has formed).

Standard library only, so ``dev/kafka`` can wait for readiness before any virtual environment
exists. Sends a Metadata v1 request (no topics) and checks that the broker list is not empty.
"""

from __future__ import annotations

import socket
import struct
import sys


def broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    client_id = b"streamfuse-probe"
    # Request header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id.
    header = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id
    body = struct.pack(">i", 0)  # an empty topic list: brokers only
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _read(sock, 4))[0]
        payload = _read(sock, size)
    correlation_id, n_brokers = struct.unpack(">ii", payload[:8])
    if correlation_id != 7:
        raise ValueError("unexpected correlation id")
    return n_brokers


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


if __name__ == "__main__":
    try:
        want = int(sys.argv[3]) if len(sys.argv) > 3 else 1
        sys.exit(0 if broker_count(sys.argv[1], int(sys.argv[2])) >= want else 1)
    except (OSError, ValueError, struct.error):
        sys.exit(1)
