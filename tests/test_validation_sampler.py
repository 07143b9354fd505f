"""``validation_sampler``: every rank gets a validation case, and fewer cases than ranks is said in one line."""

from __future__ import annotations

import logging

import pytest

from nnmamba_monai.data import validation_sampler


@pytest.mark.parametrize("num_cases", [4, 5])
def test_enough_cases_are_split_without_repeats(num_cases, caplog):
    with caplog.at_level(logging.WARNING):
        shares = [list(validation_sampler(range(num_cases), num_replicas=2, rank=rank)) for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(num_cases))
    assert not caplog.records


def test_fewer_cases_than_ranks_are_repeated_with_one_warning_line(caplog):
    with caplog.at_level(logging.WARNING):
        shares = [list(validation_sampler(range(1), num_replicas=3, rank=rank)) for rank in range(3)]
    assert shares == [[0], [0], [0]], "every rank infers a case instead of dying on empty data"
    (record,) = caplog.records  # rank 0 alone says it
    message = record.getMessage()
    assert "\n" not in message
    assert "1 validation case(s) for 3 ranks" in message and "--nproc_per_node 1" in message


def test_no_validation_cases_is_refused():
    with pytest.raises(ValueError, match="no validation cases"):
        validation_sampler([], num_replicas=2, rank=0)
