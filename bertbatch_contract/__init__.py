"""bertbatch_contract: everything two pieces of bert-batch must agree on, in one place.

Standard library only. The CDK constructs, the training container (`bert_train`), the job CLI
(`bertbatch`) and the Lambda functions all import it; it imports none of them.

- `job`: job environment variables, exit codes, stop timeout
- `hyperparameters`: the one table of training flags (name, flag, type, bounds, default, help)
  that generates the container's argparse, the CLI's options and the job definition's command,
  and the one `validate` both the CLI and the container call
- `runs`: the run-id format, its validation and generation
- `layout`: the S3 layout (datasets/, checkpoints/, runs/, models/, predictions/)
- `metrics`: CloudWatch namespace, metric names and dimensions (EMF)
- `progress`: the progress line the trainer writes and `bertbatch watch` parses
- `discovery`: the SSM parameter keys the Training stack publishes and the CLI reads
- `tags`: job tags set by the CLI and the fallback function
- `naming`: resource names `<project>-<profile>-<kind>` and paths `/<project>/<profile>/`
- `prediction`: the flags of `python -m bert_train predict` (same row type as the training
  table), their `validate`, and how rows are split into shards
- `pricing`: the price table the CLI passes to a job with a cost cap, and its parser
- `tables`: how a data file is read (JSONL/CSV/TSV by extension, header, blank lines, text
  values), by the container and by the CLI's token sample
"""
