"""Parts of the MONAI Label app: the bundle runner (pure code), the studies helper and the infer task."""

__all__: list[str] = []
