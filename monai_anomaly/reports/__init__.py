"""monai_anomaly.reports."""
