"""monai_anomaly.data."""
