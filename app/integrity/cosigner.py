"""Has outside witnesses cosign the checkpoints of the log of writers (RG_AUDIT_WITNESSES; the
protocol in app/integrity/witness.py).

Whenever a new note of the log of writers is signed (app/recent/proofs.py wakes it), each witness
that has not cosigned it gets it with `POST <url>/add-checkpoint`: `old` is the size that witness
last cosigned (0 before we know, read back from the cosignatures on the checkpoints topic at start)
and the consistency proof from there. A 409 names the size the witness holds (it was restored,
or another replica went first): the next try starts from it. Each cosignature returned is
verified with the witness's key and written to the checkpoints topic keyed `cosignatures`
(`CosignatureRecord`), so every replica serves it with the note and `verify` counts it.

Each witness has one submission in flight at most, on its own: a witness that is down, hangs
until the timeout or answers nonsense holds up no write and no other witness. Its lag grows (a
warning, paced; `rg_audit_witness_failures_total`, `rg_audit_witness_age_seconds`) and the
next note goes to it with the proof from the size it holds.

A witness that refuses a checkpoint (403, 404, 422, or another tree at the same size) is an
alarm: the note does not extend what it saw, or it does not trust our log. An error line,
`rg_audit_witness_refusals_total`, and `/readyz` names it until the witness cosigns a later
checkpoint.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.integrity.merkle import MerkleTree
from app.integrity.note import NoteError, TreeHead, parse_note
from app.integrity.witness import (
    Answer,
    CosignatureRecord,
    Cosigned,
    Failed,
    Refused,
    SizeConflict,
    WitnessError,
    WitnessKey,
    add_checkpoint_body,
    interpret,
)
from app.integrity.witness_policy import WitnessPolicy
from app.integrity.writers import COSIGNATURES_KEY, WritersNote

if TYPE_CHECKING:  # the client is imported only when there are witnesses
    import httpx
from app.logs import RepeatedFailure
from app.tasks import BackgroundTask

logger = logging.getLogger(__name__)

# What the cosigner submits: the latest signed note and the tree it was signed of (None before).
Latest = Callable[[], tuple[WritersNote, MerkleTree] | None]
# Writes one record to the checkpoints topic (key, value), returns once acknowledged.
WriteRecord = Callable[[str, bytes], Awaitable[None]]
# POSTs `body` to `url`: (status, content type, body).
Post = Callable[[str, bytes], Awaitable[tuple[int, str, bytes]]]
# Tries of one note at one witness: 409s answered with another size are followed this often.
MAX_TRIES = 3
# How often the cosigner looks again without being woken (a witness back after a failure).
RETRY_S = 1.0


@dataclass
class WitnessState:
    """What this replica knows of one witness."""

    url: str
    key: WitnessKey
    size: int = 0  # the size we believe it holds: `old` of the next submission
    cosigned: tuple[int, str] | None = None  # (size, root hex) of the last it cosigned
    refused: tuple[int, str] | None = None  # the last checkpoint it refused
    alarm: str | None = None
    failures: int = 0
    refusals: int = 0
    pending_since: float | None = None  # monotonic: since a checkpoint waits for it
    ahead_logged: int = -1
    paced: RepeatedFailure = field(default_factory=RepeatedFailure)

    @property
    def name(self) -> str:
        """The witness's key name."""
        return self.key.name


class Cosigner:
    """Submits the latest note of the log of writers to every witness of `policy`."""

    def __init__(
        self,
        policy: WitnessPolicy,
        latest: Latest,
        write: WriteRecord,
        *,
        timeout_s: float = 5.0,
        post: Post | None = None,
        on_quorum: Callable[[float], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.witnesses = [WitnessState(w.url, w.verifier) for w in policy.witnesses]
        self._by_name = {w.name: w for w in self.witnesses}
        self._latest = latest
        self._write = write
        self._timeout_s = timeout_s
        self._post = post or self._http_post
        self._client: httpx.AsyncClient | None = None
        # Observes the seconds from a note's first sight to its quorum (a metric).
        self.on_quorum = on_quorum
        self._clock = clock
        self._wake = asyncio.Event()
        self._task = BackgroundTask("witness-cosigner", self._run)
        # (origin, size, root hex) -> witness name -> cosignature line, verified.
        self._lines: dict[tuple[str, int, str], dict[str, str]] = {}
        # When each recent checkpoint was first seen, and whether its quorum was reached.
        self._first_seen: dict[tuple[int, str], float] = {}
        self._quorum_reached: dict[tuple[int, str], bool] = {}
        self.written = 0

    def start(self) -> None:
        """Begin cosigning in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop cosigning."""
        await self._task.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """A new note was signed: submit it now."""
        self._wake.set()

    def take(self, record: CosignatureRecord) -> None:
        """A cosignature read from the checkpoints topic (ours or another replica's, this run's
        or an earlier one's): kept when it verifies with a configured witness's key; that
        witness then holds at least its size."""
        state = self._by_name.get(record.witness)
        if state is None:
            return
        try:
            state.key.verify(record.line, record.head().text())
        except (WitnessError, NoteError):
            return
        self._keep(record.origin, record.size, record.root, state.name, record.line)
        state.size = max(state.size, record.size)
        if state.cosigned is None or record.size >= state.cosigned[0]:
            state.cosigned = (record.size, record.root)

    def cosignatures(self, head: TreeHead) -> list[str]:
        """The verified cosignature lines of the checkpoint `head`, in the policy's order."""
        found = self._lines.get((head.origin, head.size, head.root.hex()), {})
        return [found[w.name] for w in self.witnesses if w.name in found]

    def alarms(self) -> list[str]:
        """One line per witness that refused our latest checkpoint it was sent."""
        return [f"witness {w.name}: {w.alarm}" for w in self.witnesses if w.alarm]

    def status(self) -> dict[str, dict[str, float]]:
        """Per witness: the size it last cosigned, how long a checkpoint has waited for it
        (0 when it cosigned the latest), its failures and refusals (for the metrics)."""
        now = self._clock()
        return {
            w.name: {
                "cosigned_size": float(w.cosigned[0] if w.cosigned else 0),
                "age_seconds": 0.0 if w.pending_since is None else now - w.pending_since,
                "failures": float(w.failures),
                "refusals": float(w.refusals),
            }
            for w in self.witnesses
        }

    def _keep(self, origin: str, size: int, root: str, witness: str, line: str) -> None:
        self._lines.setdefault((origin, size, root), {})[witness] = line
        # Only the latest few checkpoints are served with their cosignatures.
        while len(self._lines) > 64:
            del self._lines[next(iter(self._lines))]

    async def _run(self) -> None:
        # One submission in flight per witness, each on its own: a witness that hangs until
        # the timeout holds up none of the others.
        busy: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_S)
                self._wake.clear()
                latest = self._latest()
                if latest is None:
                    continue
                for state in self.witnesses:
                    task = busy.get(state.name)
                    if task is None or task.done():
                        busy[state.name] = asyncio.create_task(
                            self.submit(*latest, to=[state]), name=f"witness-{state.name}"
                        )
        finally:
            for task in busy.values():
                task.cancel()
            await asyncio.gather(*busy.values(), return_exceptions=True)

    async def submit(
        self, note: WritersNote, tree: MerkleTree, *, to: list[WitnessState] | None = None
    ) -> None:
        """Send `note` (signed of `tree`) to every witness (of `to`) that has not cosigned it."""
        try:
            text = parse_note(note.note.encode()).text
            head = TreeHead.parse(text)
        except NoteError as exc:  # our own note: cannot happen short of a bug
            logger.error("the note of the log of writers does not parse: %s", exc)
            return
        checkpoint = (note.size, note.root)
        self._first_seen.setdefault(checkpoint, self._clock())
        await asyncio.gather(
            *(self._submit_to(state, note, tree, head, text) for state in to or self.witnesses)
        )
        cosigned = len(self.cosignatures(head))
        if cosigned >= self.policy.k and checkpoint not in self._quorum_reached:
            self._quorum_reached[checkpoint] = True
            self.on_quorum(self._clock() - self._first_seen.get(checkpoint, self._clock()))
        for recent in (self._first_seen, self._quorum_reached):
            while len(recent) > 64:
                del recent[next(iter(recent))]

    async def _submit_to(
        self, state: WitnessState, note: WritersNote, tree: MerkleTree, head: TreeHead, text: str
    ) -> None:
        checkpoint = (note.size, note.root)
        if state.cosigned == checkpoint:
            state.pending_since = None  # cosigned (perhaps through another replica)
            return
        if state.refused == checkpoint:
            return
        if state.pending_since is None:
            state.pending_since = self._first_seen.get(checkpoint, self._clock())
        for _ in range(MAX_TRIES):
            old = state.size
            if old > note.size:
                if state.ahead_logged != old:
                    state.ahead_logged = old
                    logger.warning(
                        "witness %s holds size %d of %s, more than our latest checkpoint (%d): "
                        "it is sent the next one that reaches it",
                        state.name,
                        old,
                        head.origin,
                        note.size,
                    )
                return
            proof = tree.consistency(old, note.size) if 0 < old < note.size else []
            body = add_checkpoint_body(old, proof, note.note)
            try:
                status, content_type, answer_body = await self._post(state.url, body)
            except Exception as exc:  # down, unreachable, too slow: it lags
                self._failed(state, note.size, f"{type(exc).__name__}: {exc}")
                return
            answer = interpret(status, content_type, answer_body, key=state.key, text=text, old=old)
            if not isinstance(answer, SizeConflict):
                await self._answered(state, answer, head, checkpoint)
                return
            logger.info(
                "witness %s holds size %d of %s (we sent old %d): going on from there",
                state.name,
                answer.size,
                head.origin,
                old,
            )
            state.size = answer.size
        self._failed(state, note.size, "the witness's size kept changing")

    async def _answered(
        self, state: WitnessState, answer: Answer, head: TreeHead, checkpoint: tuple[int, str]
    ) -> None:
        if isinstance(answer, Cosigned):
            state.size = head.size
            state.cosigned = checkpoint
            state.pending_since = None
            state.alarm = None
            state.paced.reset()
            for cosignature in answer.cosignatures:
                self._keep(head.origin, head.size, checkpoint[1], state.name, cosignature.line)
                record = CosignatureRecord(
                    head.origin, head.size, checkpoint[1], state.name, cosignature.line
                )
                try:
                    await self._write(COSIGNATURES_KEY, record.to_bytes())
                    self.written += 1
                except Exception as exc:  # Kafka away: served from memory, not kept
                    logger.warning(
                        "cosignature of witness %s (size %d) not written: %s",
                        state.name,
                        head.size,
                        exc,
                    )
        elif isinstance(answer, Refused):
            state.refused = checkpoint
            state.refusals += 1
            state.alarm = (
                f"refused checkpoint {head.size} of {head.origin} "
                f"(HTTP {answer.status}: {answer.reason[:120]})"
            )
            logger.error(
                "witness %s REFUSED checkpoint %d of %s (HTTP %d: %s): the log of writers does "
                "not extend what that witness saw, or it does not trust our key",
                state.name,
                head.size,
                head.origin,
                answer.status,
                answer.reason[:200],
            )
        elif isinstance(answer, Failed):
            self._failed(state, head.size, f"HTTP {answer.status}: {answer.reason[:200]}")

    def _failed(self, state: WitnessState, size: int, reason: str) -> None:
        state.failures += 1
        left_out = state.paced.due()
        if left_out is not None:
            logger.warning(
                "witness %s did not cosign checkpoint %d (%s); cosigning lags, retried "
                "every %.0fs%s",
                state.name,
                size,
                reason,
                RETRY_S,
                f" ({left_out} more failures since the last line)" if left_out else "",
            )

    async def _http_post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        if self._client is None:
            import httpx  # noqa: PLC0415 - only with witnesses: the service loads no client else

            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        answer = await self._client.post(f"{url}/add-checkpoint", content=body)
        return answer.status_code, answer.headers.get("content-type", ""), answer.content
