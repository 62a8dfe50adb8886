"""docs/configuration.md documents every key of the configuration model."""

from __future__ import annotations

from pydantic import BaseModel

from stacks.config import PlatformConfig
from tests.conftest import REPO


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_documented():
    doc = (REPO / "docs" / "configuration.md").read_text()
    keys = _keys(PlatformConfig)
    assert len(keys) > 40
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"keys missing from docs/configuration.md: {missing}"
