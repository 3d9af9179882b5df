"""The functions Airflow tasks call: one per task, connections in, a small report out."""
