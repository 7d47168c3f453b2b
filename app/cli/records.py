"""`process` and `tail`: working with the records of a topic."""

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from app.cli.common import EPILOG, logger
from app.cli.handler import load_handler
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.kafka import KafkaMessage


def cmd_process(args: argparse.Namespace) -> int:
    """Run a stream processor until SIGTERM/Ctrl-C; the batch in progress is finished first."""
    from app.connection import consumer_config, producer_config  # noqa: PLC0415
    from app.kafka import (  # noqa: PLC0415 - a cheap parser
        KafkaConfigError,
        KafkaConsumerClient,
        KafkaProducerClient,
        KafkaStreamConfig,
        KafkaStreamProcessor,
    )
    from app.settings import get_settings  # noqa: PLC0415

    if args.transactional_id is not None and not args.exactly_once:
        raise KafkaConfigError(
            "--transactional-id names transactional producers: add --exactly-once"
        )
    settings = get_settings()
    configure_logging(settings.log_level, "text")
    handler = load_handler(args.handler)
    group = args.group or f"ractogateway-process.{args.handler}"
    guarantee = "exactly_once" if args.exactly_once else "at_least_once"

    async def process() -> int:
        consumer = KafkaConsumerClient(
            config=consumer_config(
                settings,
                topics=[args.input],
                group_id=group,
                auto_offset_reset=args.offset_reset,
                session_timeout_ms=args.session_timeout_ms,
                # Exactly-once reads only committed records: an input written by another
                # exactly-once processor may hold aborted ones.
                isolation_level="read_committed" if args.exactly_once else "read_uncommitted",
            )
        )
        producer = KafkaProducerClient(config=producer_config(settings))
        processor = KafkaStreamProcessor(
            consumer=consumer,
            producer=producer,
            config=KafkaStreamConfig(
                batch_size=args.batch_size,
                dead_letter_topic=args.dead_letter,
                processing_guarantee=guarantee,
                transactional_id_prefix=args.transactional_id,
            ),
        )
        async with contextlib.AsyncExitStack() as stack:
            if not args.exactly_once:  # exactly-once writes through its own producers
                await stack.enter_async_context(producer)
            await stack.enter_async_context(consumer)
            stack.push_async_callback(processor.close)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, processor.stop)
            logger.info(
                "processing %s with %s as group %r (%s%s)",
                args.input,
                args.handler,
                group,
                guarantee.replace("_", "-"),
                f", transactional ids {args.transactional_id or group}.<topic>.<partition>"
                if args.exactly_once
                else "",
            )
            total = await processor.run(handler, output_topic=args.output)
        logger.info("stopped after %d record(s); offsets committed", total)
        return 0

    return asyncio.run(process())


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the records of a topic as they arrive."""
    from app.cli.tail import as_json_line, as_otlp_line, as_text_line, tail  # noqa: PLC0415
    from app.connection import consumer_config  # noqa: PLC0415 - a cheap parser
    from app.ingest.contracts import registry_client  # noqa: PLC0415
    from app.kafka import KafkaConsumerClient  # noqa: PLC0415
    from app.kafka.schemas import JsonSchemaDeserializer  # noqa: PLC0415
    from app.services import erasure_of, start_erasure  # noqa: PLC0415
    from app.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    configure_logging("WARNING", "text")
    consumer = KafkaConsumerClient(
        config=consumer_config(
            settings,
            topics=[args.topic],
            auto_offset_reset="earliest" if args.from_beginning else "latest",
            isolation_level="read_committed" if args.read_committed else "read_uncommitted",
        ),
        # With a Schema Registry, framed values are decoded by schema id (and name it).
        value_deserializer=JsonSchemaDeserializer(registry_client(settings))
        if settings.schema_registry_url is not None
        else None,
    )
    formatter = as_otlp_line if args.otlp else as_json_line if args.json else as_text_line
    # RG_ERASURE=on: sealed fields printed opened, or as the marker naming their erasure.
    erasure = erasure_of(settings)

    def line(message: "KafkaMessage") -> str:
        return formatter(message if erasure is None else erasure.open_message(message))

    async def run() -> None:
        if erasure is not None:
            await start_erasure(erasure)
        try:
            await tail(consumer, out=sys.stdout, formatter=line, max_messages=args.max_messages)
        finally:
            if erasure is not None:
                await erasure.store.close()

    asyncio.run(run())
    return 0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `process` and `tail`."""
    process = commands.add_parser(
        "process",
        help="run a KafkaStreamProcessor with your handler",
        description="Consume --input in batches, call the handler (module:function, sync or "
        "async) with each batch, publish what it returns, then commit. SIGTERM or Ctrl-C "
        "finishes the batch in progress, commits and exits 0. The handler returns None, a list "
        "of KafkaPublishRequest, or a list of values for --output. Instances started with the "
        "same --group share the input's partitions; when one stops or dies the others take "
        "its partitions over. With --exactly-once each batch's outputs and offsets are one "
        "transaction per input partition (readers of the outputs use read_committed, e.g. "
        "`tail --read-committed`); an instance whose partitions another took over stops with "
        "'fenced: another instance took over <id>' and exit status 2 (docs/streams.md).",
        epilog=EPILOG,
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
        "--exactly-once",
        action="store_true",
        help="outputs, dead letters and consumed offsets in one transaction per input "
        "partition and batch: each input's outputs become visible to read_committed readers "
        "exactly once (default: at least once)",
    )
    process.add_argument(
        "--transactional-id",
        metavar="PREFIX",
        help="with --exactly-once: the transactional ids are PREFIX.TOPIC.PARTITION, one per "
        "input partition held (default PREFIX: the group); instances of one group must share it",
    )
    process.add_argument(
        "--session-timeout-ms",
        type=int,
        default=10_000,
        metavar="MS",
        help="how long the group waits for a silent instance before giving its partitions to "
        "the others (default 10000; the broker allows 6000 and up unless configured otherwise)",
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
        epilog=EPILOG,
    )
    tail_cmd.add_argument("topic", metavar="TOPIC")
    tail_cmd.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record kept"
    )
    shape = tail_cmd.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per line")
    shape.add_argument(
        "--otlp",
        action="store_true",
        help="one OTLP JSON logs request per line, each record a GenAI event (what an "
        "OpenTelemetry Collector's otlpjsonfile receiver reads; docs/opentelemetry.md)",
    )
    tail_cmd.add_argument(
        "--read-committed",
        action="store_true",
        help="only records of committed transactions (what an exactly-once processor's "
        "readers see); without it open and aborted ones are printed too",
    )
    tail_cmd.add_argument(
        "--max-messages", type=int, metavar="N", help="exit after N records (default: never)"
    )
    tail_cmd.set_defaults(func=cmd_tail)
