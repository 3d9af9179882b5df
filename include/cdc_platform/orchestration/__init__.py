"""The functions Airflow tasks call: one per task, connections in, a small report out."""


class NotConfirmed(ValueError):
    """A run that changes what the operator must decide on was triggered without its confirmation."""


def require_confirmation(confirm: bool, consequence: str) -> None:
    """Manual DAGs that act on data take a ``confirm`` param; unset, the run fails saying why."""
    if not confirm:
        raise NotConfirmed(f"set the param confirm=true: {consequence}")
