"""What a run left behind: its outputs in the artifacts bucket or under local-runs/, compared and charted."""
