"""A bare TCP forwarder on loopback (asyncio, TCP_NODELAY both ways): what one more hop costs a
call on this machine, with no HTTP handled, for `bench.proxy` to set beside what the proxy
adds (the two extra process wake-ups of a hop are part of any proxy's added latency).

    python -m bench.tcp_forwarder --port <listen> --to <upstream port>

prints `ready` once it accepts connections and forwards until SIGTERM.
"""

import argparse
import asyncio
import socket

_READ_BYTES = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_READ_BYTES):
            writer.write(data)
    except ConnectionError:
        pass  # either side went: the other is closed below
    finally:
        writer.close()


async def _serve(port: int, upstream_port: int) -> None:
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        for side in (writer, up_writer):
            side.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port, backlog=128)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Forward `--port` to `--to` on 127.0.0.1 until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.to))


if __name__ == "__main__":
    main()
