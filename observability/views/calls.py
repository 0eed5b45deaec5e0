"""Stub: being written."""


def _stub(*args, **kwargs):
    raise NotImplementedError


call_list = call_export = call_log_settings = call_detail = _stub
operator_call_list = operator_call_detail = api_call_list = api_call_detail = _stub
