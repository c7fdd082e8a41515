"""Helper 192's review (session 39): what an SRE runs and watches, with careless input. Each test failed before.

- An `OPS_MONGO__URL` with a typo in its port (`27O17`) ends `leadflow-ops` with a traceback and
  exit status 1 ("done, but some items need you") instead of the documented 2 ("could not run") and one line.
- `contact erase --email A --email B` erases B only, silently (argparse keeps the last); `--lead` is repeatable, so
  an operator reads the two flags alike. Now refused, naming the option.
- `notifier_notifications_failed_total{reason="redirected"}` is not exported at zero, unlike every other reason an
  adapter raises: the first redirected failure after a pod starts is invisible to `rate()`/`increase()`.
- (helper 194) A MongoDB URL PyMongo cannot read was quoted in part by its error (a password with an unescaped `/`
  or `$`): `leadflow-ops` prints it, a service logs it. Its user information is masked.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from pymongo.errors import PyMongoError

from leadflow_notifier.metrics import CHANNELS, NotifierMetrics
from leadflow_ops import cli
from leadflow_ops.commands.contact import command_of
from leadflow_ops.errors import OpsError
from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings

pytestmark = pytest.mark.unit


def test_a_typo_in_the_ops_mongo_url_port_is_a_settings_failure_with_status_2(tmp_path: object) -> None:
    seed = os.path.join(str(tmp_path), "accounts.json")
    with open(seed, "w") as f:
        f.write('{"accounts": []}')
    env = {"OPS_KAFKA__BOOTSTRAP_SERVERS": "localhost:1", "OPS_MONGO__URL": "mongodb://ops:s3cret@mongo:27O17/",
           "OPS_MONGO__TIMEOUT_MS": "300"}  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.run(cli.parser().parse_args(["seed", seed]))
        except Exception as exc:  # noqa: BLE001 - what the console script would show as a traceback
            pytest.fail(f"leadflow-ops ended with a traceback ({type(exc).__name__}: {exc}) and exit status 1")
    assert code == 2
    assert "s3cret" not in err.getvalue()


def test_contact_erase_given_two_emails_is_refused_naming_the_option() -> None:
    argv = ["contact", "erase", "--account", "acme", "--email", "jane@example.com", "--email", "jane.doe@work.example",
            "--reason", "Privacy #1"]  # fmt: skip
    with pytest.raises(OpsError, match="--email: one per erasure"):
        command_of(cli.parser().parse_args(argv))  # it erased the second alone, the first dropped without a word
    one = command_of(cli.parser().parse_args(argv[:6] + argv[8:]))
    assert one.payload.email == "jane@example.com"


def test_every_failure_reason_an_adapter_raises_is_exported_at_zero() -> None:
    registry = CollectorRegistry()
    NotifierMetrics(registry)
    for channel in CHANNELS:
        value = registry.get_sample_value(
            "notifier_notifications_failed_total", {"channel": channel, "reason": "redirected"}
        )
        assert value == 0.0, f"no {channel}/redirected series until the first one: its first increase is not seen"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("mongodb://leadflow:Zq8/Kp2/Wx9@db.example:27017/leadflow", "Kp2/Wx9"),
        ("mongodb://leadflow:Zq8/Kp$2@db.example:27017/leadflow", "Kp$2"),
    ],
)
def test_an_unreadable_mongodb_url_is_refused_without_quoting_its_password(url: str, secret: str) -> None:
    with pytest.raises(PyMongoError) as refused:
        make_mongo_client(MongoSettings(url=SecretStr(url)), app_name="ops")
    said = str(refused.value)
    assert secret not in said, f"the error (printed by leadflow-ops, logged by a service) quotes the password: {said!r}"
