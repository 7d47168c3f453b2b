"""The `ractogateway-kafka` console script."""

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Literal

import uvicorn

from app import __version__
from app.clients import consumer_config, producer_config
from app.embedded import EmbeddedKafka, EmbeddedKafkaError, KafkaDistribution
from app.handler import HandlerSpecError, load_handler
from app.kafka import (
    KafkaClientError,
    KafkaConsumerClient,
    KafkaProducerClient,
    KafkaStreamConfig,
    KafkaStreamProcessor,
)
from app.logs import configure_logging
from app.settings import Settings, get_settings
from app.tail import as_json_line, as_text_line, tail

logger = logging.getLogger("ractogateway_kafka")

_EPILOG = """\
settings come from RG_* environment variables or a .env file (see README.md);
for example RG_KAFKA_BOOTSTRAP_SERVERS=broker1:9092,broker2:9092 RG_PORT=8080.
"""


def _configure_logging(level: str, fmt: Literal["json", "text"] = "text") -> None:
    configure_logging(level, fmt)


def _exit_on_sigterm() -> None:
    # SIGTERM becomes SystemExit(0) so `finally` blocks (stopping the broker) run, exactly as they
    # do for Ctrl-C's KeyboardInterrupt.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def _serve(settings: Settings) -> None:
    from app.main import create_app  # noqa: PLC0415 - the broker command needs no web stack

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Logging is configured already (one format for every logger); the service writes its
        # own line per request, with the route and the request id.
        log_config=None,
        access_log=False,
        # The service finishes in-flight requests on SIGTERM, but not forever.
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


def _distribution(args: argparse.Namespace) -> KafkaDistribution:
    return KafkaDistribution(args.cache_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API against the brokers of the settings."""
    settings = get_settings()
    _configure_logging(settings.log_level, settings.log_format)
    _exit_on_sigterm()
    _serve(settings)
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded Apache Kafka in the foreground until SIGTERM or Ctrl-C."""
    _configure_logging(args.log_level)
    distribution = _distribution(args)
    if args.download_only:
        logger.info("Apache Kafka %s jars ready in %s", distribution.version, distribution.ensure())
        return 0
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with tempfile.TemporaryDirectory(prefix="rg-kafka-") as scratch:
        data_dir = args.data_dir or Path(scratch)
        broker = EmbeddedKafka(data_dir, port=args.port, distribution=distribution, heap=args.heap)
        try:
            broker.start()
            print(f"bootstrap={broker.bootstrap_servers}", flush=True)
            logger.info("broker log: %s; SIGTERM or Ctrl-C stops it", broker.log_file)
            while not stop.wait(0.5):
                if not broker.is_running():
                    logger.error("Apache Kafka exited on its own; see %s", broker.log_file)
                    return 1
        finally:
            broker.stop()
    logger.info("Apache Kafka stopped")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`make run`: the embedded broker (unless RG_KAFKA_BOOTSTRAP_SERVERS is set) and the API."""
    settings = get_settings()
    _configure_logging(settings.log_level, settings.log_format)
    _exit_on_sigterm()
    if "kafka_bootstrap_servers" in settings.model_fields_set:
        logger.info("using Kafka at %s", ",".join(settings.kafka_bootstrap_servers))
        _serve(settings)
        return 0
    broker = EmbeddedKafka(
        args.data_dir, port=args.port, distribution=_distribution(args), heap=args.heap
    )
    try:
        logger.info("starting Apache Kafka on 127.0.0.1:%d (data in %s)", args.port, args.data_dir)
        broker.start()
        logger.info("Apache Kafka ready; broker log: %s", broker.log_file)
        _serve(settings.model_copy(update={"kafka_bootstrap_servers": [broker.bootstrap_servers]}))
    finally:
        logger.info("stopping Apache Kafka")
        broker.stop()
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """Run a stream processor until SIGTERM/Ctrl-C; the batch in progress is finished first."""
    settings = get_settings()
    _configure_logging(settings.log_level)
    handler = load_handler(args.handler)
    group = args.group or f"ractogateway-process.{args.handler}"

    async def process() -> int:
        consumer = KafkaConsumerClient(
            config=consumer_config(
                settings, topics=[args.input], group_id=group, auto_offset_reset=args.offset_reset
            )
        )
        producer = KafkaProducerClient(config=producer_config(settings))
        async with producer, consumer:
            processor = KafkaStreamProcessor(
                consumer=consumer,
                producer=producer,
                config=KafkaStreamConfig(
                    batch_size=args.batch_size, dead_letter_topic=args.dead_letter
                ),
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, processor.stop)
            logger.info("processing %s with %s as group %r", args.input, args.handler, group)
            total = await processor.run(handler, output_topic=args.output)
        logger.info("stopped after %d record(s); offsets committed", total)
        return 0

    return asyncio.run(process())


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the records of a topic as they arrive."""
    settings = get_settings()
    _configure_logging("WARNING")
    consumer = KafkaConsumerClient(
        config=consumer_config(
            settings,
            topics=[args.topic],
            auto_offset_reset="earliest" if args.from_beginning else "latest",
        )
    )
    formatter = as_json_line if args.json else as_text_line
    asyncio.run(tail(consumer, out=sys.stdout, formatter=formatter, max_messages=args.max_messages))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    """Write the OpenAPI document, or check that the file matches the app."""
    from app.openapi import openapi_document, render  # noqa: PLC0415 - needs the web stack

    text = render(openapi_document())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            logger.error("%s is out of date: run `ractogateway-kafka openapi`", args.output)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    logger.info("wrote %s", args.output)
    return 0


def _add_broker_options(
    parser: argparse.ArgumentParser, *, port: int, data_dir: Path | None
) -> None:
    parser.add_argument(
        "--port", type=int, default=port, help=f"client port on 127.0.0.1 (default {port})"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=data_dir,
        metavar="DIR",
        help="broker data folder, kept across restarts"
        + (
            f" (default {data_dir})"
            if data_dir
            else " (default: a temporary folder, removed on exit)"
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the Apache Kafka jars are downloaded to (default $RG_EMBEDDED_CACHE_DIR "
        "or ~/.cache/ractogateway-kafka)",
    )
    parser.add_argument("--heap", default="512m", help="JVM maximum heap (default 512m)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ractogateway-kafka",
        description="Audit-trail sidecar for AI applications: records prompts and responses "
        "durably in Apache Kafka.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API (configured by RG_* settings)",
        description="Serve the HTTP API on RG_HOST:RG_PORT against RG_KAFKA_BOOTSTRAP_SERVERS.",
        epilog=_EPILOG,
    )
    serve.set_defaults(func=cmd_serve)

    broker = commands.add_parser(
        "broker",
        help="run an embedded single-node Apache Kafka in the foreground",
        description="Run a real single-node Apache Kafka (KRaft) on 127.0.0.1. Downloads the jars "
        "through Maven on first use (needs java and mvn). Prints 'bootstrap=127.0.0.1:PORT' once "
        "clients can connect; SIGTERM or Ctrl-C shuts it down cleanly.",
    )
    _add_broker_options(broker, port=9092, data_dir=None)
    broker.add_argument(
        "--log-level", default="INFO", help="log level of this command (default INFO)"
    )
    broker.add_argument(
        "--download-only",
        action="store_true",
        help="download the Apache Kafka jars if missing, then exit",
    )
    broker.set_defaults(func=cmd_broker)

    run = commands.add_parser(
        "run",
        help="embedded broker + HTTP API together (what `make run` does)",
        description="Start the embedded Apache Kafka, wait until it is ready, then serve the API. "
        "With RG_KAFKA_BOOTSTRAP_SERVERS set, serve against those brokers instead. "
        "Ctrl-C or SIGTERM stops both.",
        epilog=_EPILOG,
    )
    _add_broker_options(run, port=9092, data_dir=Path("var/kafka"))
    run.set_defaults(func=cmd_run)

    process = commands.add_parser(
        "process",
        help="run a KafkaStreamProcessor with your handler",
        description="Consume --input in batches, call the handler (module:function, sync or "
        "async) with each batch, publish what it returns, then commit. SIGTERM or Ctrl-C "
        "finishes the batch in progress, commits and exits 0. The handler returns None, a list "
        "of KafkaPublishRequest, or a list of values for --output.",
        epilog=_EPILOG,
    )
    process.add_argument("--handler", required=True, metavar="MODULE:FUNCTION")
    process.add_argument("--input", required=True, metavar="TOPIC", help="topic to consume")
    process.add_argument("--output", metavar="TOPIC", help="topic for plain returned values")
    process.add_argument(
        "--group", help="consumer group (default ractogateway-process.MODULE:FUNCTION)"
    )
    process.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="records per batch (default 32)"
    )
    process.add_argument(
        "--dead-letter", metavar="TOPIC", help="where failing batches go (default: stop on error)"
    )
    process.add_argument(
        "--offset-reset",
        choices=["earliest", "latest"],
        default="earliest",
        help="where a new group starts (default earliest)",
    )
    process.set_defaults(func=cmd_process)

    tail_cmd = commands.add_parser(
        "tail",
        help="print the records of a topic as they arrive",
        description="Print records of TOPIC (all partitions, no consumer group) until Ctrl-C.",
        epilog=_EPILOG,
    )
    tail_cmd.add_argument("topic", metavar="TOPIC")
    tail_cmd.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record kept"
    )
    tail_cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    tail_cmd.add_argument(
        "--max-messages", type=int, metavar="N", help="exit after N records (default: never)"
    )
    tail_cmd.set_defaults(func=cmd_tail)

    openapi = commands.add_parser(
        "openapi",
        help="write the OpenAPI document (openapi.json)",
        description="Write the service's OpenAPI document, or with --check exit 1 when the file "
        "differs from what the app serves.",
    )
    openapi.add_argument(
        "--output",
        type=Path,
        default=Path("openapi.json"),
        metavar="FILE",
        help="where to write it (default openapi.json)",
    )
    openapi.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 when stale"
    )
    openapi.set_defaults(func=cmd_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (EmbeddedKafkaError, HandlerSpecError, KafkaClientError) as exc:
        # One line the user can act on, not a traceback.
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
