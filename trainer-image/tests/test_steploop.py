"""The sharded step loop's dealing of micro-batches: every process must run as many
forwards (FSDP gathers each layer collectively), whatever the rows and the processes."""

from __future__ import annotations

import pytest

from gradients_trainer import dist, steploop


@pytest.mark.parametrize("rows,per_rank,world", [(48, 24, 2), (12, 4, 8), (3, 4, 4), (10, 3, 3)])
def test_every_process_gets_as_many_micro_batches_and_every_row_is_dealt(
        rows: int, per_rank: int, world: int, monkeypatch: pytest.MonkeyPatch) -> None:
    dealt = []
    for r in range(world):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        dealt.append(steploop.micro_batches(rows, per_rank, world, seed=42, epoch=0))
    assert len({len(d) for d in dealt}) == 1 and len(dealt[0]) >= 1, dealt
    assert sorted({i for d in dealt for batch in d for i in batch}) == list(range(rows))
