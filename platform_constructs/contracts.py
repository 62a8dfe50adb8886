"""The training container's contracts (`bert_train.contract`, `bert_train.metrics`) for the stacks.

`bert_train` lives in the image's build context (training_container/); the Makefile installs
the project editable, which maps it into the venv. Both modules are pure Python (no torch).
"""

from __future__ import annotations

from pathlib import Path

from bert_train import contract, metrics

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_CONTAINER_DIR = REPO_ROOT / "training_container"

__all__ = ["contract", "metrics", "REPO_ROOT", "TRAINING_CONTAINER_DIR"]
