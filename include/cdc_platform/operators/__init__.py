"""Custom Airflow operators of the platform."""
