"""MONAI Label app serving monai_anomaly bundles (``monailabel start_server --app <this folder>``)."""

__all__: list[str] = []
