"""Metrics: metric records in (from the line pass or JSON artifacts), a columnar table, a
pandas timeline and health `Anomaly`s out."""
