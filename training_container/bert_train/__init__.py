"""BERT fine-tuning for AWS Batch: `python -m bert_train` (see train.py for the loop).

Everything it shares with the CLI and the stacks (job variables, flags, run ids, S3 layout,
metrics, the progress line) lives in `bertbatch_contract`, which the image carries beside it.
"""
