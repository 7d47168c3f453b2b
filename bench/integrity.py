"""`make bench`'s integrity pair: what signed checkpoints and redaction cost per `POST /audit`.

The chain is always on, so "off" is a service with the chain only (no signing key, no
redaction) and "on" one that also signs a checkpoint every second (a key made by
`ractogateway-kafka keys generate`, RG_AUDIT_SIGNING_KEY_FILE, RG_AUDIT_CHECKPOINT_S=1) and
masks personal data (RG_REDACTION=mask). Both serve side by side, each on a topic of its own,
and are loaded in turn with the same event, in rounds whose order alternates (off then on, then
on then off): the load of a shared machine drifts, and alternating puts both under the same
drift, so their ratio holds within one run. The figure is the service process's CPU time per
request (/proc utime + stime over the round, divided by the requests wrk completed).

Before measuring, one event with an e-mail address goes to each service and /metrics must show
it masked by "on" only; after, "on" must have written checkpoints and "off" none: a pair that
does not measure what its labels say fails instead of printing a ratio.
"""

import asyncio
import base64
import dataclasses
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.embedded import free_port
from bench import wrk
from bench.procfs import CpuProbe
from bench.service import Service, ServiceError
from bench.stats import Measurement, combined

CHECKPOINT_S = "1"
KEY_ID = "bench"
_PROBE = {
    "user_id": "bench-probe",
    "model": "gpt-4o",
    "prompt": "Write to bench.person@example.com about the refund.",
    "response": "Done.",
}
_METRIC_LINE = re.compile(
    r"^(rg_audit_checkpoints_total|rg_redactions_total|rg_audit_tsa_tokens_total)"
    r"(\{[^}]*\})? (\S+)$"
)
# BENCH_PAIR=tsa: how often the service asks the timestamp authority (when the log grew).
TSA_INTERVAL_S = "1"


@dataclass(frozen=True)
class Variant:
    """One service of the pair: its settings on top of the bench's."""

    name: str
    label: str
    settings: dict[str, str]


@dataclass(frozen=True)
class PairPlan:
    """How the pair is measured: `rounds` rounds of `round_s` seconds each per service."""

    rounds: int
    round_s: int
    warmup_s: int
    connections: int


@dataclass
class _Running:
    variant: Variant
    service: Service
    rounds: list[Measurement] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None


def signing_key(directory: Path) -> Path:
    """A fresh Ed25519 key made by the console script, as an operator makes one."""
    script = Path(sys.executable).parent / "ractogateway-kafka"
    command = [str(script), "keys", "generate", "--out", str(directory), "--key-id", KEY_ID]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"keys generate exited with {result.returncode}: {result.stderr}")
    return directory / f"{KEY_ID}.key.pem"


def kek_file(directory: Path) -> Path:
    """A fresh erasure KEK (32 random bytes, one line of base64), readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "erasure.kek"
    path.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    path.chmod(0o600)
    return path


def variants(key: Path, tsa: tuple[str, Path] | None = None) -> tuple[Variant, Variant]:
    """Off (chain only) and on (chain, signed checkpoints every second, redaction mask); with
    BENCH_PAIR=proofs, both signed and off without the proof index (RG_AUDIT_PROOFS=false):
    what serving proofs of every record costs; with BENCH_PAIR=tsa (`tsa`: the authority's URL
    and CA file), both signed with proofs and on stamping the log of writers every second;
    with BENCH_PAIR=erasure, chain only and on sealing prompt and response (RG_ERASURE=on, a
    KEK next to the signing key)."""
    if os.environ.get("BENCH_PAIR") == "erasure":
        kek = kek_file(key.parent)
        return (
            Variant("chain_only", "chain only", {"RG_REDACTION": "off"}),
            Variant(
                "erasure",
                "chain + erasure (sealed)",
                {"RG_REDACTION": "off", "RG_ERASURE": "on", "RG_ERASURE_KEK_FILE": str(kek)},
            ),
        )
    if os.environ.get("BENCH_PAIR") == "tsa" and tsa is not None:
        signed = {
            "RG_AUDIT_SIGNING_KEY_FILE": str(key),
            "RG_AUDIT_CHECKPOINT_S": CHECKPOINT_S,
            "RG_AUDIT_WRITERS_S": CHECKPOINT_S,
            "RG_REDACTION": "off",
        }
        stamped = {
            **signed,
            "RG_AUDIT_TSA_URLS": tsa[0],
            "RG_AUDIT_TSA_CA_FILE": str(tsa[1]),
            "RG_AUDIT_TSA_INTERVAL_S": TSA_INTERVAL_S,
        }
        return (
            Variant("signed_proofs", "signed + proof index", signed),
            Variant("signed_proofs_tsa", "signed + proof index + timestamps", stamped),
        )
    if os.environ.get("BENCH_PAIR") == "proofs":
        signed = {
            "RG_AUDIT_SIGNING_KEY_FILE": str(key),
            "RG_AUDIT_CHECKPOINT_S": CHECKPOINT_S,
            "RG_REDACTION": "off",
        }
        return (
            Variant(
                "signed_no_proofs", "signed, no proof index", {**signed, "RG_AUDIT_PROOFS": "false"}
            ),
            Variant("signed_proofs", "signed + proof index", signed),
        )
    return (
        Variant("chain_only", "chain only", {"RG_REDACTION": "off"}),
        Variant(
            "signed_masked",
            "chain + signed checkpoints + mask",
            {
                "RG_AUDIT_SIGNING_KEY_FILE": str(key),
                "RG_AUDIT_CHECKPOINT_S": CHECKPOINT_S,
                "RG_REDACTION": "mask",
            },
        ),
    )


def _metrics(service: Service) -> dict[str, float]:
    """Checkpoints written and values redacted (every kind), from the service's /metrics."""
    found = {
        "rg_audit_checkpoints_total": 0.0,
        "rg_redactions_total": 0.0,
        "rg_audit_tsa_tokens_total": 0.0,
    }
    text = httpx.get(f"{service.url}/metrics", timeout=10.0).text
    for line in text.splitlines():
        if match := _METRIC_LINE.match(line):
            found[match.group(1)] += float(match.group(3))
    return found


def _check(running: _Running, *, masks: bool) -> None:
    answer = httpx.post(f"{running.service.url}/audit", json=_PROBE, timeout=30.0)
    if answer.status_code != 201:
        raise ServiceError(f"{running.variant.label}: POST /audit answered {answer.status_code}")
    if (_metrics(running.service)["rg_redactions_total"] > 0) != masks:
        raise ServiceError(f"{running.variant.label}: redaction is not as configured")


def _check_sealing(bootstrap_servers: str, off_topic: str, on_topic: str) -> None:
    """Erasure is on where it says: only "on" has a keys topic (its probe's subject's key)."""
    from tests.helpers.kafka import topic_names  # noqa: PLC0415 - the erasure pair only

    names = asyncio.run(topic_names(bootstrap_servers))
    if f"{off_topic}.keys" in names or f"{on_topic}.keys" not in names:
        raise ServiceError(f"erasure is not as configured: keys topics {sorted(names)}")


def _round(running: _Running, broker_pid: int | None, script: Path, plan: PairPlan) -> None:
    pids = {"producer": running.service.pid}
    if broker_pid is not None:
        pids["broker"] = broker_pid
    cpu = CpuProbe(pids)
    cpu.start()
    measured = wrk.run(
        url=f"{running.service.url}/audit",
        script=script,
        connections=plan.connections,
        duration_s=plan.round_s,
        name=running.variant.name,
        label=running.variant.label,
    )
    cpu_percent = cpu.stop()
    running.rounds.append(dataclasses.replace(measured, cpu_percent=cpu_percent, cpu_s=cpu.used_s))


def _ratio(on: float | None, off: float | None) -> float | None:
    return None if on is None or not off else round(on / off, 3)


def measure(
    *,
    bootstrap_servers: str,
    broker_pid: int | None,
    script: Path,
    plan: PairPlan,
    scratch: Path,
    log_dir: Path,
    run_id: str,
) -> tuple[dict[str, Any], list[Measurement]]:
    """Run both services, measure them in alternating rounds, stop them; the results and the
    two combined measurements (off first)."""
    key = signing_key(scratch / "keys")
    pair: list[_Running] = []
    pair_kind = os.environ.get("BENCH_PAIR")
    authority = None
    if pair_kind == "tsa":
        # The tests' authority: OpenSSL's `ts -reply` behind HTTP on loopback.
        from tests.helpers.tsa import TsaServer, make_authority  # noqa: PLC0415

        authority = TsaServer(make_authority(scratch / "tsa", "bench"))
    try:
        tsa = None if authority is None else (authority.url, authority.authority.ca_file)
        for variant in variants(key, tsa):
            # Each port is chosen just before its service binds it: two free_port() calls in
            # a row may return the same port.
            service = Service(
                bootstrap_servers=bootstrap_servers,
                port=free_port(),
                topic=f"bench-{variant.name}-{run_id}",
                log_path=log_dir / f"service-{variant.name}.log",
                settings=variant.settings,
            )
            pair.append(_Running(variant, service))
            print(f"starting '{variant.label}' on {service.url}", flush=True)
            service.start()
        off, on = pair
        both_signed = pair_kind in ("proofs", "tsa")
        _check(off, masks=False)
        _check(on, masks=pair_kind not in ("proofs", "tsa", "erasure"))
        if pair_kind == "erasure":
            _check_sealing(bootstrap_servers, off.service.topic, on.service.topic)
        for running in pair:
            print(f"== {running.variant.label}: {plan.warmup_s} s warm-up", flush=True)
            wrk.run(
                url=f"{running.service.url}/audit",
                script=script,
                connections=plan.connections,
                duration_s=plan.warmup_s,
                name="warmup",
                label="warm-up",
            )
        for index in range(plan.rounds):
            for running in pair if index % 2 == 0 else pair[::-1]:
                print(
                    f"== {running.variant.label}: round {index + 1} of {plan.rounds}, "
                    f"{plan.round_s} s measured",
                    flush=True,
                )
                _round(running, broker_pid, script, plan)
        for running in pair:
            running.metrics = _metrics(running.service)
    finally:
        for running in pair:
            running.exit_code = running.service.stop()
        if authority is not None:
            authority.stop()
    # Off signs nothing in the integrity pair; in the proofs and tsa pairs both sign.
    off_signed = bool(off.metrics["rg_audit_checkpoints_total"])
    on_signed = bool(on.metrics["rg_audit_checkpoints_total"])
    if on_signed != (pair_kind != "erasure") or off_signed != both_signed:
        raise ServiceError(f"checkpoints written: off {off.metrics}, on {on.metrics}")
    if pair_kind == "tsa" and not on.metrics["rg_audit_tsa_tokens_total"]:
        raise ServiceError(f"no timestamp token kept: {on.metrics}")
    totals = [combined(r.variant.name, r.variant.label, r.rounds) for r in pair]
    results = {
        "rounds": plan.rounds,
        "round_s": plan.round_s,
        "warmup_s": plan.warmup_s,
        "variants": [
            {
                "name": r.variant.name,
                "label": r.variant.label,
                "settings": r.variant.settings,
                "topic": r.service.topic,
                "metrics_after": r.metrics,
                "exit_code": r.exit_code,
                "combined": total.to_json(),
                "rounds": [m.to_json() for m in r.rounds],
            }
            for r, total in zip(pair, totals, strict=True)
        ],
        "ratio_on_over_off": ratios(totals[0], totals[1]),
    }
    return results, totals


def ratios(off: Measurement, on: Measurement) -> dict[str, float | None]:
    """On over off for each figure of the pair (above 1: on costs more, or serves more)."""
    return {
        "requests_per_s": _ratio(on.requests_per_s, off.requests_per_s),
        "p50_ms": _ratio(on.p50_ms, off.p50_ms),
        "p99_ms": _ratio(on.p99_ms, off.p99_ms),
        "service_cpu_us_per_request": _ratio(
            on.producer_cpu_us_per_request, off.producer_cpu_us_per_request
        ),
    }
