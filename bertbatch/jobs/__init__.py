"""Jobs on AWS Batch (requests, capacity, following, logs, prediction and preparation jobs) and the
same programs run as child processes on this machine."""
