"""The benchmark's command line: which contenders run beside the tournament."""

import pytest

from qbench.__main__ import parse

REQUIRED = ["examples", "--out", "o", "--python", "p", "--gradients", "g"]


def test_every_contender_runs_unless_told_otherwise():
    assert parse(REQUIRED).contenders == ("baseline", "search", "halving")
    assert parse([*REQUIRED, "--contenders", "halving"]).contenders == ("halving",)
    assert parse([*REQUIRED, "--contenders", "search, halving"]).contenders == ("search", "halving")


def test_an_unknown_contender_is_refused_naming_the_flag_and_the_choices(capsys):
    with pytest.raises(SystemExit):
        parse([*REQUIRED, "--contenders", "halving,grid"])
    err = capsys.readouterr().err
    assert "--contenders" in err and "unknown contender grid" in err and "baseline, search, halving" in err
