"""Puts the "CDC pipeline" page in the Airflow UI's navigation (Airflow 3 plugin interface):
the FastAPI app serves the page and its data, the external view links it from the nav and shows
it inside the UI."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cdc_platform.pipeline_page.app import UI_ROUTE, URL_PREFIX, create_app


class CdcPipelinePagePlugin(AirflowPlugin):
    name = "cdc_pipeline_page"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "CDC pipeline"}]
    external_views = [{
        "name": "CDC pipeline",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "url_route": UI_ROUTE,
        "nav_top_level": True,
    }]
