import pytest
from pydantic import ValidationError

from shared.schemas import RankingRequest, RankResult, build_ranking_response


def test_rankings_are_sorted_by_logit_then_index_and_usage_sums_tokens():
    result = RankResult(logits=[0.5, 2.0, 0.5, -1.0], token_counts=[10, 11, 12, 13])
    response = build_ranking_response(result)
    assert [(r.index, r.logit) for r in response.rankings] == [(1, 2.0), (0, 0.5), (2, 0.5), (3, -1.0)]
    assert response.usage.prompt_tokens == response.usage.total_tokens == 46


def test_limit_keeps_the_best_n():
    result = RankResult(logits=[0.1, 0.3, 0.2], token_counts=[1, 1, 1])
    assert [r.index for r in build_ranking_response(result, 2).rankings] == [1, 2]


def test_request_accepts_truncate_in_any_case_and_top_k():
    body = RankingRequest.model_validate(
        {"model": "m", "query": {"text": "q"}, "passages": [{"text": "p"}], "truncate": "end", "top_k": 3}
    )
    assert body.truncate == "END" and body.limit == 3


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"truncate": "START"},
        {"passages": []},
        {"query": {"text": ""}},
        {"top_n": 0},
        {"passages": [{"text": "p", "score": 1}]},
    ],
)
def test_request_rejects_bad_bodies(change):
    body = {"model": "m", "query": {"text": "q"}, "passages": [{"text": "p"}], **change}
    with pytest.raises(ValidationError):
        RankingRequest.model_validate(body)


def test_rerank_models_lists_the_fleet_s_models_and_refuses_malformed_lists():
    import pytest
    from pydantic import ValidationError

    from shared.settings import Settings

    assert Settings(model="acme/one").model_ids == ["acme/one"]
    settings = Settings(models=" a = acme/one , /models/local-two ")
    assert settings.model_sources == [("a", "acme/one"), ("local-two", "/models/local-two")]
    for bad in ("a=", "=acme/one", "a=x,a=y", "a=x,,b=y"):
        with pytest.raises(ValidationError):
            Settings(models=bad)
