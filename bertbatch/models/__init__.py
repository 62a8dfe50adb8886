"""Base models staged in the artifacts bucket and fine-tuned models in the registry."""
