"""Which spellings of a served model id a client may use (LiteLLM's NIM route rewrites `.` and `_`)."""

import pytest

from api.ranking.model_names import match_served_model

SERVED = ["nvidia/llama-3.2-nv-rerankqa-1b-v2", "acme/tiny_bert", "BAAI/bge-reranker-v2-m3"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nvidia/llama-3.2-nv-rerankqa-1b-v2", "nvidia/llama-3.2-nv-rerankqa-1b-v2"),
        ("nvidia/llama-3_2-nv-rerankqa-1b-v2", "nvidia/llama-3.2-nv-rerankqa-1b-v2"),  # LiteLLM's URL
        ("acme/tiny.bert", "acme/tiny_bert"),  # LiteLLM's body for a served id with an underscore
        ("BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3"),
    ],
)
def test_exact_ids_and_underscore_dot_spellings_match(name, expected):
    assert match_served_model(name, SERVED) == expected


@pytest.mark.parametrize(
    "name",
    [
        "nvidia/llama-3-2-nv-rerankqa-1b-v2",  # dash for dot
        "NVIDIA/llama-3.2-nv-rerankqa-1b-v2",  # case
        "llama-3.2-nv-rerankqa-1b-v2",  # prefix dropped
        "nvidia/llama-3.2-nv-rerankqa-1b",  # a different model
        "baai/bge-reranker-v2-m3",
        "",
    ],
)
def test_unrelated_names_match_nothing(name):
    assert match_served_model(name, SERVED) is None


def test_an_exact_match_wins_and_an_ambiguous_spelling_matches_nothing():
    served = ["acme/m_1", "acme/m.1"]
    assert match_served_model("acme/m_1", served) == "acme/m_1"
    assert match_served_model("acme/m.1", served) == "acme/m.1"
    assert match_served_model("acme/m.1.x", ["acme/m_1.x", "acme/m.1_x"]) is None
