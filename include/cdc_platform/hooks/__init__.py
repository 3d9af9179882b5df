"""Airflow hooks in the providers' shape: a ``*_conn_id``, clients created lazily."""
