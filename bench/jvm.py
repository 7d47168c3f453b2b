"""Kafka's own load generator, `ProducerPerformance` (the class behind
kafka-producer-perf-test.sh), as the JVM client's line: the same broker, the same record value,
the service's producer settings (bench/producers.py), `--throughput -1` (as fast as it goes).

Its jars are `org.apache.kafka:kafka-tools` of the broker's version, resolved once through the
machine's Maven into the embedded broker's cache folder by app/embedded/distribution.py, as the
broker's, and run on the machine's JDK with the heap kafka-run-class.sh gives it (256 MB).

It reports the rate, the mean and max, and the 50th, 95th and 99th percentiles of each record's
latency (send to acknowledgement, its time in the batch included); it has no 90th, so that
column stays empty. The CPU time is the JVM's over its whole run, start-up and JIT included (the
tool has no warm-up): a little above what a warm JVM would spend.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from app.embedded.distribution import KAFKA_VERSION, KafkaDistribution
from bench.procfs import CpuProbe, RssSampler
from bench.stats import Measurement

MAIN_CLASS = "org.apache.kafka.tools.ProducerPerformance"
HEAP = "-Xmx256M"

# Warnings and errors to stderr; the tool's report goes to stdout.
_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%p %c: %m%n
"""

# "50000 records sent, 4854.84 records/sec (10.74 MB/sec), 2114.44 ms avg latency,
#  4708.00 ms max latency, 1563 ms 50th, 4597 ms 95th, 4650 ms 99th, 4670 ms 99.9th."
_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \([\d.]+ MB/sec\), "
    r"(?P<mean>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


class KafkaToolsError(RuntimeError):
    """The tools could not be resolved, or ProducerPerformance failed."""


def kafka_tools(cache_dir: Path, version: str = KAFKA_VERSION) -> KafkaDistribution:
    """kafka-tools and its runtime dependencies under `cache_dir`, resolved on first use."""
    return KafkaDistribution(cache_dir, version=version, artifact="kafka-tools")


def summary(stdout: str) -> dict[str, float] | None:
    """The figures of ProducerPerformance's last line (its final summary), None without one."""
    for line in reversed(stdout.splitlines()):
        if match := _SUMMARY.search(line):
            return {name: float(value) for name, value in match.groupdict().items()}
    return None


def run(
    tools: KafkaDistribution,
    *,
    properties: dict[str, str],
    topic: str,
    value: bytes,
    records: int,
    scratch: Path,
    broker_pid: int | None,
    name: str,
    label: str,
) -> Measurement:
    """ProducerPerformance sending `records` copies of `value`; its own figures, the JVM's CPU
    time and its peak resident memory."""
    java = shutil.which("java")
    if java is None:
        raise KafkaToolsError("java not found on PATH: install a JDK (17 or newer)")
    payload = scratch / "producer-performance.payload"
    payload.write_bytes(value)  # one payload: the file holds no newline, the delimiter
    log4j = scratch / "producer-performance.log4j.properties"
    log4j.write_text(_LOG4J, encoding="utf-8")
    command = [
        java,
        HEAP,
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp",
        str(tools.ensure() / "*"),
        MAIN_CLASS,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--throughput",
        "-1",
        "--payload-file",
        str(payload),
        "--producer-props",
        *(f"{key}={setting}" for key, setting in properties.items()),
    ]
    out_path, err_path = scratch / "producer-performance.out", scratch / "producer-performance.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    broker = CpuProbe({"broker": broker_pid} if broker_pid is not None else {})
    broker.start()
    rss = RssSampler(process.pid).start()
    # wait4 reaps the JVM and hands back its rusage: the CPU time of all its threads, exactly,
    # even though /proc forgets it once it is gone.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    broker_percent = broker.stop()
    peak = rss.stop()
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    match = summary(stdout)
    if process.returncode != 0 or match is None:
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        raise KafkaToolsError(
            f"ProducerPerformance exited with {process.returncode}: {stderr[-2000:] or stdout}"
        )
    sent = int(match["records"])
    duration_s = sent / match["rate"]
    jvm_cpu_s = usage.ru_utime + usage.ru_stime
    return Measurement(
        name=name,
        label=label,
        requests=sent,
        duration_s=duration_s,
        p50_ms=match["p50"],
        p90_ms=None,
        p99_ms=match["p99"],
        max_ms=match["max"],
        mean_ms=match["mean"],
        # The JVM's share over the tool's own sending time (its start-up is on top); the
        # broker's over the whole run.
        cpu_percent={"producer": round(100 * jvm_cpu_s / duration_s, 1), **broker_percent},
        cpu_s={"producer": jvm_cpu_s, **broker.used_s},
        peak_rss_kib=peak,
    )
