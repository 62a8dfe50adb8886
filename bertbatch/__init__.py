"""bertbatch: submit, watch and collect BERT fine-tuning jobs on the bert-batch platform."""

__version__ = "0.1.0"
