"""Fleet: many job folders in; discovery, parallel analysis, the Parquet dataset (the only
Parquet writer) and the fleet summary out."""
