"""monai_anomaly.handlers."""
