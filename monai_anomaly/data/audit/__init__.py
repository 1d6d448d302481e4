"""monai_anomaly.data.audit: the data audit (duplicates, split leaks, label conflicts, acquisition shortcuts).

Import each name from the module that defines it: ``features`` (per-file statistics), ``duplicates``
(near-duplicate and exact-duplicate groups), ``shortcuts`` (per-class statistics and the shortcut classifier),
``report`` (the findings in words, the report files and the ``AUDIT`` output rule) and ``run``
(:func:`~monai_anomaly.data.audit.run.audit_dataset`, what the CLI's ``audit`` command calls).
"""

__all__: list[str] = []
