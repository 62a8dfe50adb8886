"""Where a model comes from when it is a hub id: the local Hugging Face cache, or the hub when it
can be reached; otherwise one line at once instead of a minute of retries."""

from __future__ import annotations

import subprocess
import sys

from bertbatch_contract import job

from .conftest import subprocess_env, write_tsv


def test_a_hub_model_with_the_hub_unreachable_fails_at_once_in_one_line(tmp_path, refused_port):
    train = tmp_path / "train.tsv"
    write_tsv(train, [{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}])
    env = subprocess_env({"HF_ENDPOINT": f"http://127.0.0.1:{refused_port}", "HF_HOME": str(tmp_path / "hf")})
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # as on a laptop: online mode, no network
        env.pop(offline, None)
    result = subprocess.run([sys.executable, "-m", "bert_train", "--train", str(train), "--output-uri",
                             str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == job.EXIT_BAD_INPUT, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("bert_train: error: --model bert-base-uncased: not in the local Hugging Face cache and "
                           f"the hub (http://127.0.0.1:{refused_port}) cannot be reached (Connection refused)"), line
    assert "bertbatch models import" in line
    assert not (tmp_path / "out").exists()
