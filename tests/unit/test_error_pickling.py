"""Every error the hub raises survives DBOS's record of it: a step's exception is stored pickled and raised again
from the record when a workflow is replayed or recovered."""

from __future__ import annotations

import importlib
import inspect
import pickle
from typing import Any

import pytest
from dbos._serialization import DBOSDefaultSerializer

from wedsync.errors import WedsyncError

for module in ("wedsync.connectors.errors", "wedsync.services.oauth", "wedsync.services.webhook_inbox",
               "wedsync.connectors.channels.ical_feed", "wedsync.connectors.calendars.base"):
    importlib.import_module(module)


def _all(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all(sub)]
    return out


ERRORS = sorted({c for c in [WedsyncError, *_all(WedsyncError)] if not c.__module__.startswith("tests")},
                key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _make(cls: type[WedsyncError]) -> WedsyncError:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = [f"{p.name} value" for p in params
                  if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    keywords = {p.name: 7.5 for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return cls(*positional, **keywords)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
def test_an_error_comes_back_from_dbos_s_record_as_it_was(cls: type[WedsyncError]) -> None:
    error = _make(cls)
    error.details = {"field": "phone"}
    back: Any = DBOSDefaultSerializer.deserialize(DBOSDefaultSerializer.serialize(error))
    assert type(back) is cls
    assert str(back) == str(error) and back.args == error.args
    assert back.__dict__ == error.__dict__ and back.code == error.code


def test_the_errors_that_broke_it_are_covered() -> None:
    """CircuitOpen, RateLimited and ProviderDown take a required ``retry_after``, CsvFileError a code before its
    message: pickle's default rebuilt them as ``cls(message)`` and raised "missing 1 required ... argument"."""
    from wedsync.connectors.channels.csv_layouts import CsvFileError
    from wedsync.connectors.errors import CircuitOpen, ProviderDown, RateLimited

    assert {CircuitOpen, ProviderDown, RateLimited, CsvFileError} <= set(ERRORS)
    csv_error = pickle.loads(pickle.dumps(CsvFileError("empty_file", "the file is empty")))
    assert (csv_error.code, csv_error.message) == ("empty_file", "the file is empty")
    back = pickle.loads(pickle.dumps(CircuitOpen("open", retry_after=12.0, provider="google")))
    assert (back.retry_after, back.provider, back.message) == (12.0, "google", "open")
