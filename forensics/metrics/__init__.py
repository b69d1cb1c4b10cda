"""Metrics: metric records in (from the line pass or JSON artifacts), a columnar table, a
timeline of numpy arrays and health `Anomaly`s out."""
