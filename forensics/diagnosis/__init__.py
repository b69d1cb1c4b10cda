"""Diagnosis: hits, tracebacks, launcher reports and anomalies in; `Finding`s with their
roles, the root cause, its confidence, the culprit rank and the verdict out. Every decision
about what killed a run is made here, from the catalog's relations."""
