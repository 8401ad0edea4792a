"""`mch-engine run` options that split work between processes."""

from __future__ import annotations

import pytest

from engine.cli import build_parser


def parse(*argv: str) -> object:
    return build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0-3", {0, 1, 2, 3}), ("0,2", {0, 2}), ("1", {1}), ("0-1, 4", {0, 1, 4})],
)
def test_partitions_accept_lists_and_ranges(text: str, expected: set[int]) -> None:
    args = parse("--role", "deliver", "--partitions", text)
    assert args.partitions == frozenset(expected)  # type: ignore[attr-defined]


def test_partitions_default_to_all() -> None:
    assert parse().partitions is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["a", "1-x", ",", ""])
def test_bad_partitions_are_refused_with_an_example(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--partitions", text)
    assert "0-3" in capsys.readouterr().err


def test_shard_is_index_over_count() -> None:
    assert parse("--role", "transform", "--shard", "1/3").shard == (1, 3)  # type: ignore[attr-defined]
    assert parse().shard is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "1/0", "3/-1"])
def test_bad_shards_are_refused_with_an_example(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--shard", text)
    assert "0/2" in capsys.readouterr().err
