import pytest

from shared.errors import ErrorType, RerankError
from worker.truncation import Kept, fit_pair


def fit(query_len, passage_len, truncate="END", limit=16, specials=3):
    return fit_pair(
        index=7, query_len=query_len, passage_len=passage_len, specials=specials, limit=limit, truncate=truncate
    )


def test_a_pair_that_fits_is_kept_whole_under_both_modes():
    assert fit(5, 8, "NONE") == Kept(5, 8)
    assert fit(5, 8, "END") == Kept(5, 8)
    assert fit(5, 8, "NONE", limit=16) == Kept(5, 8)  # 5 + 8 + 3 == 16: exactly at the limit


def test_none_rejects_an_over_long_pair_naming_passage_length_and_limit():
    with pytest.raises(RerankError) as caught:
        fit(5, 9, "NONE")
    assert caught.value.type is ErrorType.VALIDATION
    assert "passage 7" in caught.value.message
    assert "17 tokens" in caught.value.message
    assert "16" in caught.value.message


def test_end_cuts_the_passage_from_its_end_until_the_pair_fits():
    assert fit(5, 100) == Kept(5, 8)


def test_end_empties_the_passage_when_the_query_leaves_exactly_no_room():
    assert fit(13, 4) == Kept(13, 0)


def test_end_cuts_the_query_when_it_alone_is_over_the_limit():
    assert fit(40, 4) == Kept(13, 0)
    kept = fit(40, 4)
    assert kept.query + kept.passage + 3 == 16
