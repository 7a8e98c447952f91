import numpy as np
import pytest

from shared.errors import ErrorType, RerankError
from worker.text.truncation import fit_pairs


def fit(query_len, passage_len, truncate="END", limit=16, specials=3):
    """The kept (query, passage) tokens of passage 7 of a request whose other passages are one token long."""
    passages = np.array([1] * 7 + [passage_len])
    query, kept = fit_pairs(query_len=query_len, passage_lens=passages, specials=specials, limit=limit, truncate=truncate)
    return query, int(kept[7])


def test_a_pair_that_fits_is_kept_whole_under_both_modes():
    assert fit(5, 8, "NONE") == (5, 8)
    assert fit(5, 8, "END") == (5, 8)
    assert fit(5, 8, "NONE", limit=16) == (5, 8)  # 5 + 8 + 3 == 16: exactly at the limit


def test_none_rejects_an_over_long_pair_naming_passage_length_and_limit():
    with pytest.raises(RerankError) as caught:
        fit(5, 9, "NONE")
    assert caught.value.type is ErrorType.VALIDATION
    assert "passage 7" in caught.value.message
    assert "17 tokens" in caught.value.message
    assert "16" in caught.value.message


def test_end_cuts_the_passage_from_its_end_until_the_pair_fits():
    assert fit(5, 100) == (5, 8)


def test_end_empties_the_passage_when_the_query_leaves_exactly_no_room():
    assert fit(13, 4) == (13, 0)


def test_end_cuts_the_query_when_it_alone_is_over_the_limit():
    assert fit(40, 4) == (13, 0)
    query, passage = fit(40, 4)
    assert query + passage + 3 == 16


def test_end_cuts_only_the_passages_that_do_not_fit():
    query, kept = fit_pairs(query_len=5, passage_lens=np.array([2, 30, 8, 9]), specials=3, limit=16, truncate="END")
    assert query == 5 and kept.tolist() == [2, 8, 8, 8]
