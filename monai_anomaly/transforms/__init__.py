"""monai_anomaly.transforms."""
