"""bert-batch benchmarks: `python -m bench` (or `make bench`) runs every part and writes
bench/results/*.json. See bench/README.md for the method and the recorded numbers."""
