"""monai_anomaly.engines."""
