"""Lambda handlers deployed by the stacks (packaged from this directory as one asset)."""
