"""Loopback port helpers for the embedded broker."""

import socket

from app.embedded.errors import EmbeddedKafkaError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(port: int, *, role: str = "broker") -> None:
    """Raise `EmbeddedKafkaError` naming `port` when it cannot be bound on loopback.

    Checked before the JVM starts: Kafka would otherwise fail seconds later with a stack trace
    buried in its log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR matches what the broker's own acceptor does, so a port in TIME_WAIT
        # after a clean restart is not reported as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise EmbeddedKafkaError(
                f"{role} port {port} on {LOOPBACK} is already in use ({exc.strerror}); "
                f"stop whatever listens there or choose another port"
            ) from exc
