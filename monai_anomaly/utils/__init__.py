"""monai_anomaly.utils."""
