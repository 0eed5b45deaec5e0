"""Stub: being written."""


def _stub(*args, **kwargs):
    raise NotImplementedError


tenant_analytics = operator_analytics = _stub
