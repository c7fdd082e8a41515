"""Helper 198's review (session 39) of shared/mongo.py: a MongoDB URL PyMongo cannot read must not have any part of
its password in what is printed about it (the error `leadflow-ops` prints and a service logs,
and the warnings PyMongo prints to stderr while it reads the URL).

- PyMongo's `Bad database name "..."` quotes the path *percent-decoded* (`+` a space, `%65` an `e`) and cut at its
  first `.`: the masking looks for the URL's raw user-information pieces, which are then not in the message.
- A password with an unescaped `?`: PyMongo reads what follows as options and *warns* (`Unknown option: <name>.`,
  `<value> is not a valid read preference`) before it fails; warnings go to stderr unmasked.
Each failed before `_read_without_credentials` (the URL read again with its user information replaced).
"""

from __future__ import annotations

import string
import urllib.parse
import warnings

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from pymongo.errors import PyMongoError

from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings

pytestmark = pytest.mark.unit

MARK = "Zq9Xk"  # a piece of the password no PyMongo message has of itself


def _said(url: str) -> str:
    """Everything printed about the URL: the error, if any, and PyMongo's warnings."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            make_mongo_client(MongoSettings(url=SecretStr(url)), app_name="ops")
        except PyMongoError as exc:
            error = str(exc)
        else:
            error = ""
    return " | ".join([error, *(str(w.message) for w in warned)])


@pytest.mark.parametrize(
    "url",
    [
        f"mongodb://leadflow:Pa/ss${MARK}.rd@db.example:27017",  # cut at its '.'
        f"mongodb://leadflow:x/my+{MARK}+pass@db.example:27017",  # '+' decoded as a space
        f"mongodb://leadflow:x/S%65cret{MARK}%20Pass@db.example:27017",  # percent-decoded
    ],
)
def test_a_bad_database_name_error_does_not_quote_the_password(url: str) -> None:
    said = _said(url)
    assert MARK.lower() not in said.lower(), f"printed about the URL: {said!r}"


@pytest.mark.parametrize(
    "url",
    [
        f"mongodb://leadflow:Xy?{MARK}=Pass@db.example:27017",  # "Unknown option: zq9xk."
        f"mongodb://leadflow:Xy?readPreference={MARK}@db.example:27017",  # "... is not a valid read preference"
    ],
)
def test_pymongos_warnings_about_an_unreadable_url_do_not_quote_the_password(url: str) -> None:
    said = _said(url)
    assert MARK.lower() not in said.lower(), f"printed about the URL (a warning on stderr): {said!r}"


RESERVED = ":/?#[]@!$&'()*+,;=% ."
PIECE = st.text(alphabet=RESERVED + string.ascii_lowercase[:3] + string.digits[:3], max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=PIECE,
    before=PIECE,
    after=PIECE,
    quoted=st.booleans(),
    host=st.sampled_from(["db.example", "db.example:27017", "[::1]:27017", "[::1", "db.example:x", "a,b"]),
    scheme=st.sampled_from(["mongodb://", "mongodb+srv://"]),
    tail=st.sampled_from(["", "/leadflow", "/?w=majority", "/leadflow?authSource=admin&tls=true", "/?x"]),
)
@example(user="u", before="x/", after=".rd", quoted=False, host="db.example", scheme="mongodb://", tail="")
def test_no_unreadable_url_has_its_password_printed(
    user: str, before: str, after: str, quoted: bool, host: str, scheme: str, tail: str
) -> None:
    secret = MARK if not quoted else urllib.parse.quote(MARK, safe="")  # "%5Aq9Xk" is read as "Zq9Xk"
    url = f"{scheme}{user}:{before}{secret}{after}@{host}{tail}"
    said = _said(url)
    assert MARK.lower() not in said.lower(), f"{url!r}: printed {said!r}"
