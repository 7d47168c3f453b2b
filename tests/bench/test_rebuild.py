"""The cold-rebuild bench's code path on the session broker at a tiny size: the trail it fills
verifies, and the proof index reader it times serves a proof of the last record (no timing is
asserted: speed is what the bench measures, not what tests check)."""

import os
from pathlib import Path

from bench import rebuild


async def test_the_cold_rebuild_fills_a_trail_and_times_a_proof_of_its_last_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    filled, rebuilt = await rebuild.measure(
        kafka_bootstrap, 45, directory=tmp_path, checkpoint_every=20
    )
    assert (filled.records, filled.checkpoints) == (45, 3)  # at 20, 40 and the last
    assert rebuilt.records == 45
    assert rebuilt.disk_bytes > 45 * 32  # a hash per record at least
    assert rebuilt.proof_bytes > 0
    assert rebuilt.wall_s > 0
    assert os.listdir(tmp_path) == []  # the index's folder is removed after
    lines = rebuild.report(filled, rebuilt)
    assert "cold rebuild, measured" in lines[1]
    assert "extrapolated to 10,000,000 records" in lines[2]
