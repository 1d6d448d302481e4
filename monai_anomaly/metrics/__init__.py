"""monai_anomaly.metrics."""
