"""Stub: being written."""


def tail_page(*args, **kwargs):
    raise NotImplementedError
