"""A worker whose recipe cannot be served refuses to start within seconds, with one line naming the file and the
problem (no traceback), before it consumes anything."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from tests.processes import REPO_ROOT, child_env
from worker.text.recipes import BUILT_IN, RECIPE_FILE

QWEN = BUILT_IN["Qwen/Qwen3-Reranker-0.6B"]


def test_bad_recipes_stop_the_worker_at_once_with_one_line(tmp_path, qwen3_model_dir, bert_model_dir):
    cases = {  # name: (model, recipe, the problem the line names)
        "unknown-key": (qwen3_model_dir, {**QWEN, "temperature": 0.1}, "unknown key 'temperature' in the recipe"),
        "passage-not-last": (qwen3_model_dir, {**QWEN, "prompt": {"pair": "<Document>: {passage}\n<Query>: {query}"}},
                             "{passage} must be the last placeholder of prompt.pair"),
        "score-token": (qwen3_model_dir, {**QWEN, "score": {"type": "token_logits", "positive": "yes indeed"}},
                        "score.positive 'yes indeed' is not a single token"),
        "no-lm-head": (bert_model_dir, {"score": {"type": "token_logits", "positive": "yes"}},
                       "needs a causal LM with an LM head, but the model is a BertForSequenceClassification"),
    }  # fmt: skip
    started, running = time.monotonic(), {}
    for name, (source, recipe, _) in cases.items():
        model_dir = tmp_path / name
        shutil.copytree(source, model_dir)
        (model_dir / RECIPE_FILE).write_text(json.dumps(recipe))
        env = child_env(model=model_dir, redis_url="redis://127.0.0.1:1/0")  # no Redis: it must stop before
        running[name] = subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=REPO_ROOT, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    for name, process in running.items():
        _, stderr = process.communicate(timeout=120)
        recipe_file = tmp_path / name / RECIPE_FILE
        assert process.returncode == 2, (name, stderr)
        lines = [line for line in stderr.splitlines() if line.startswith("rerank-fleet worker:")]
        assert len(lines) == 1 and "Traceback" not in stderr, (name, stderr)
        assert lines[0].startswith(f"rerank-fleet worker: {recipe_file}: ") and cases[name][2] in lines[0], lines[0]
    assert time.monotonic() - started < 60  # four workers side by side on a 2-core machine


def test_a_worker_told_of_several_models_but_not_its_own_refuses_to_guess(bert_model_dir, xlmr_model_dir):
    env = child_env(models=f"a={bert_model_dir},b={xlmr_model_dir}", redis_url="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-m", "worker"], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert "RERANK_MODELS" in result.stderr and "set RERANK_MODEL" in result.stderr
