"""Base URLs and tokens of http connections, as the provider's HttpHook reads them."""
from __future__ import annotations


def base_url(http_conn_id: str) -> str:
    """``scheme://host[:port]`` of the connection (its ``schema`` is the scheme, http by default)."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=http_conn_id)
    # The provider's own rule, without the requests session get_conn() would build around it
    # (apache-airflow-providers-http 6.3, pinned in requirements.txt).
    hook._set_base_url(hook.get_connection(http_conn_id))
    return hook.base_url


def base_url_and_token(http_conn_id: str) -> tuple[str, str | None]:
    """The base URL and the connection's password, which our services take as a bearer token."""
    from airflow.sdk import BaseHook

    return base_url(http_conn_id), BaseHook.get_connection(http_conn_id).password or None
