"""BERT fine-tuning for AWS Batch.

Kept import-light on purpose: the CDK stacks and the CLI import `bert_train.metrics` and
`bert_train.contract` without pulling in torch.
"""
