"""Airflow Notifier that posts platform alerts to the webhook of the ``cdc_alerts`` connection.

Use it as a failure callback: ``on_failure_callback=WebhookAlertNotifier()``.
Deadline Alerts use ``cdc_platform.alerting.deadline_missed`` (an AsyncCallback).

Not the provider's ``HttpNotifier``: that posts the payload it is given (a Jinja template) and
fails on the first error, where this one builds the alert from the failed task's context,
records it in the health history for the pipeline page, and retries a webhook that answers 5xx.
"""
from __future__ import annotations

from airflow.sdk import BaseNotifier

from cdc_platform.alerting import alert_from_task_context, deliver
from cdc_platform.connections import ALERTS_CONN_ID


class WebhookAlertNotifier(BaseNotifier):
    template_fields = ("title",)

    def __init__(self, title: str | None = None, severity: str = "error", conn_id: str = ALERTS_CONN_ID):
        super().__init__()
        self.title = title
        self.severity = severity
        self.conn_id = conn_id

    def notify(self, context) -> None:
        deliver(alert_from_task_context(context, self.title, self.severity), self.conn_id)
