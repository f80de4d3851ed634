"""The generator's witness file, which the chaos tests trust to say what was confirmed durable:
a line cut short by kill -9 (a write of several pages can be) is never read as a confirmation,
even when the next run appends to the same file."""

from __future__ import annotations

from pathlib import Path

from edge.clock import Clock
from edge.config import GeneratorConfig
from edge.generator import Generator
from edge.journal import Journal
from tests.support.procs import read_witness


async def test_a_run_after_a_cut_line_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    witness = tmp_path / "witness.txt"
    # the killed run's last write stopped inside a line: without care the next run's first
    # line would be glued to it and read as "run 7f771da8281e67475147fb2, seq 1, n 0"
    witness.write_text("7f771da8281f 100 0 ok\n7f771da8281")
    async with Journal(tmp_path / "journal.db", Clock(assume_synced=True)) as journal:
        settings = GeneratorConfig(enabled=True, rate=0, total=3, chunk=3, witness=witness)
        generator = Generator(journal, settings)
        await generator.run()
    seen = read_witness(witness)
    assert seen == {
        100: ("7f771da8281f", 0),
        1: (generator.run_id, 0),
        2: (generator.run_id, 1),
        3: (generator.run_id, 2),
    }
    assert "7f771da8281\n" in witness.read_text()


def test_lines_without_their_mark_or_newline_are_not_confirmations(tmp_path: Path) -> None:
    witness = tmp_path / "witness.txt"
    witness.write_text(
        "aaaaaaaaaaaa 1 0 ok\n"
        "aaaaaaaaaaaa 2 10\n"  # cut inside the mark
        "aaaaaaaaaaaa 3 1 ok\n"
        "aaaaaaaaaaaa 4 2 ok"  # the newline never written
    )
    assert read_witness(witness) == {1: ("aaaaaaaaaaaa", 0), 3: ("aaaaaaaaaaaa", 1)}
