"""Long passages as windows (API.md section 6): the arithmetic, and the windows' pairs against the contract."""

import numpy as np
import pytest

from shared.errors import ErrorType, RerankError
from tests.reference import Reference, token_rows
from worker.text.tokenization import PairTokenizer
from worker.text.windows import best_of_windows, plan_windows

QUERY = "what is the capital city of france"
LONG = " ".join(f"paris{i % 7} river bank" for i in range(40))


def spans(windows) -> list[tuple[int, int, int]]:
    return list(zip(windows.owners.tolist(), windows.offsets.tolist(), windows.lengths.tolist()))


def test_a_passage_that_fits_is_one_window_and_a_long_one_steps_by_room_minus_overlap():
    windows = plan_windows(np.array([5, 10, 11, 26]), room=10, max_windows=16, overlap=2, truncate="NONE")
    assert spans(windows) == [(0, 0, 5), (1, 0, 10), (2, 0, 10), (2, 8, 3), (3, 0, 10), (3, 8, 10), (3, 16, 10)]
    assert windows.firsts.tolist() == [0, 1, 2, 4]


def test_the_overlap_is_at_most_half_a_window():
    windows = plan_windows(np.array([25]), room=10, max_windows=16, overlap=32, truncate="NONE")
    assert windows.offsets.tolist() == [0, 5, 10, 15]  # step 10 - min(32, 5)


def test_end_keeps_the_first_n_windows_and_none_refuses_naming_the_passage_and_both_counts():
    assert spans(plan_windows(np.array([3, 40]), room=10, max_windows=2, overlap=0, truncate="END")) == [
        (0, 0, 3), (1, 0, 10), (1, 10, 10)]  # fmt: skip
    with pytest.raises(RerankError) as caught:
        plan_windows(np.array([3, 40]), room=10, max_windows=2, overlap=0, truncate="NONE")
    assert caught.value.type is ErrorType.VALIDATION
    assert caught.value.message.startswith("passage 1: it needs 4 windows") and "max_chunks_per_passage=2" in caught.value.message


def test_each_passage_gets_its_best_window_s_logit_and_all_its_windows_tokens():
    windows = plan_windows(np.array([5, 26]), room=10, max_windows=16, overlap=2, truncate="NONE")
    logits, tokens = best_of_windows(np.array([0.5, -1.0, 2.0, 0.1], np.float32), np.array([8, 13, 13, 13]), windows)
    assert logits.tolist() == [0.5, 2.0] and tokens.tolist() == [8, 39]


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def tokenizers(request):
    reference = Reference(request.getfixturevalue(f"{request.param}_model_dir"), 40)
    hf = reference.tokenizer
    pairs = PairTokenizer(hf.backend_tokenizer, max_seq_len=40, uses_type_ids="token_type_ids" in hf.model_input_names)
    return reference, pairs


def test_windowed_pairs_are_the_contract_s_for_each_family(tokenizers):
    reference, pairs = tokenizers
    for max_windows in (2, 16):
        got, windows = pairs.encode_windows(QUERY, ["short", LONG], "END", max_windows=max_windows, overlap=4)
        want = [reference.tokenizer(QUERY, "short").input_ids] + [
            window["input_ids"][0].tolist() for window in reference.windows(QUERY, LONG, max_windows=max_windows, overlap=4)
        ]  # fmt: skip
        assert token_rows(got) == want
        if got.type_ids is not None:
            assert got.pair(1)[1].tolist() == reference.windows(QUERY, LONG, max_windows=2, overlap=4)[0]["token_type_ids"][0].tolist()
        assert windows.owners.tolist() == [0] + [1] * (len(want) - 1)
        assert max(got.lengths) <= 40


def test_one_window_is_today_s_encoding(tokenizers):
    _, pairs = tokenizers
    for truncate in ("END", "NONE"):
        passages = ["short", "a little longer passage"] + ([LONG] if truncate == "END" else [])
        windowed, windows = pairs.encode_windows(QUERY, passages, truncate, max_windows=1, overlap=4)
        assert windows is None and token_rows(windowed) == token_rows(pairs.encode(QUERY, passages, truncate))


def test_the_tokenizer_s_own_overflowing_pieces_give_the_same_windows(tokenizers):
    _, pairs = tokenizers
    fast, _ = pairs.encode_windows(QUERY, ["", "short", LONG], "END", max_windows=5, overlap=3)
    careful, _ = pairs._pair_by_pair(QUERY, ["", "short", LONG], "END", None, 5, 3)
    assert token_rows(fast) == token_rows(careful)


def test_a_request_over_the_window_limit_is_refused_from_its_lengths(tokenizers):
    assert len(plan_windows(np.array([5, 26]), room=10, max_windows=16, overlap=2, truncate="END", max_total=4)) == 4
    with pytest.raises(RerankError) as refused:
        plan_windows(np.array([5, 26]), room=10, max_windows=16, overlap=2, truncate="END", max_total=3)
    assert refused.value.type is ErrorType.TOO_LARGE and "RERANK_MAX_WINDOWS_PER_REQUEST" in refused.value.message
    _, pairs = tokenizers
    _, windows = pairs.encode_windows(QUERY, ["short", LONG], "END", max_windows=5, overlap=3)
    for encode in (pairs.encode_windows, pairs._pair_by_pair):  # templates, and the tokenizer's own pairs
        args = (QUERY, ["short", LONG], "END") + ((None, 5, 3) if encode == pairs._pair_by_pair else ())
        options = {} if encode == pairs._pair_by_pair else {"max_windows": 5, "overlap": 3}
        assert len(encode(*args, **options, max_total=len(windows))[1]) == len(windows)
        with pytest.raises(RerankError) as refused:
            encode(*args, **options, max_total=len(windows) - 1)
        assert f"needs {len(windows)} windows" in refused.value.message
