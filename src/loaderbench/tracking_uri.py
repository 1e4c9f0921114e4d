"""Where the tracking store is: resolve ``mlflow.tracking_uri``, keep credentials out of it, and
check that a server answers there and lets us in, before any work.

A URI is printed, logged, recorded as a param and written by Hydra into the job folder
(``.hydra/overrides.yaml``, ``config.yaml``, ``multirun.yaml``) before any job code runs. So a
URI that holds a password (``http://user:password@host``) is refused, by
:func:`check_command_line` before Hydra starts, and by :func:`resolve_tracking_uri` where a
config file set it; the server's credentials come from MLflow's own variables
(``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, or ``MLFLOW_TRACKING_TOKEN``),
which nothing here records. Nothing in this module imports mlflow.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from loaderbench.config import ConfigError

SQLITE = "sqlite:///"
# Tracking stores MLflow 3 opens (a plain folder, file://, it refuses).
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
KEY, ENV = "mlflow.tracking_uri", "MLFLOW_TRACKING_URI"
USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
CREDENTIALS_FIX = f"{USERNAME_ENV} and {PASSWORD_ENV}, or {TOKEN_ENV}"
# The userinfo of any ``scheme://user[:password]@host`` in a string (a command line, a list of
# sweep values): everything between ``://`` and the last ``@`` before the host's end.
_USERINFO = re.compile(r"(?<=://)[^/\s]*@")
# An authenticated request a tracking server must answer (its /health is open to anyone).
_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


class StoreUnreachable(ConfigError):
    """No tracking server answers at the configured address (one line, exit 2)."""


class StoreUnauthorized(ConfigError):
    """The tracking server answered 401 or 403: no credentials, or wrong ones (exit 2)."""


# --- credentials ----------------------------------------------------------------------------
def redact(text: str, mark: str = "") -> str:
    """``text`` with the userinfo of every URI in it replaced by ``mark`` (``***@`` to show
    where it was; the default removes it): what may be printed or recorded."""
    return _USERINFO.sub(mark, text)


def has_credentials(uri: str) -> bool:
    return bool(_USERINFO.search(uri))


def _refuse_credentials(uri: str, where: str) -> None:
    """A URI that holds credentials is refused in one line that does not repeat them."""
    if not has_credentials(uri):
        return
    shown = redact(uri, "***@")
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in ("http", "https", "databricks"):
        fix = f"set {CREDENTIALS_FIX} in the environment instead"
    else:  # a database: its driver reads the password from its own files or variables
        fix = (
            "keep the password out of the URI (postgresql reads PGPASSWORD or ~/.pgpass, "
            "mysql ?read_default_file=~/.my.cnf)"
        )
    raise ConfigError(
        f"{where}={shown} holds credentials, and a URI is printed, logged and recorded; "
        f"remove them from it and {fix}"
    )


def override_values(argv: Sequence[str], key: str = KEY) -> list[str]:
    """The values given to ``key`` on a Hydra command line (``key=``, ``+key=``, ``++key=``)."""
    values = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name.lstrip("+~") == key:
            values.append(value)
    return values


def check_command_line(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse credentials in ``mlflow.tracking_uri=...`` or ``$MLFLOW_TRACKING_URI`` before
    Hydra starts: Hydra writes the overrides to the job folder before any job code runs."""
    for value in override_values(argv):
        _refuse_credentials(value, KEY)
    _refuse_credentials(environ.get(ENV, ""), ENV)


# --- where the store is ---------------------------------------------------------------------
def add_tracking_uri_option(parser: argparse.ArgumentParser) -> None:
    """``--tracking-uri`` of a command that reads a store (report, reproduce, doctor)."""
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db")


def default_tracking_uri(launch_dir: str | os.PathLike) -> str:
    return SQLITE + str(Path(launch_dir).resolve() / "outputs" / "mlflow.db")


def resolve_tracking_uri(configured: str | None, launch_dir: str | os.PathLike) -> str:
    """``mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite file under
    ``outputs/`` of the launch directory. Relative SQLite paths are made absolute against the
    launch directory, so jobs that run elsewhere (submitit) write to the same store. A URI that
    holds credentials is refused."""
    where = KEY if configured else ENV if os.environ.get(ENV) else KEY
    uri = configured or os.environ.get(ENV) or default_tracking_uri(launch_dir)
    _refuse_credentials(uri, where)
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        uri = SQLITE + str((Path(launch_dir) / uri[len(SQLITE) :]).resolve())
    if "://" not in uri or uri.startswith("file:"):
        raise ConfigError(
            f"mlflow.tracking_uri={uri}: a plain folder store is refused by MLflow 3; "
            "use sqlite:///path/to/mlflow.db or http://host:port"
        )
    scheme = uri.split("://", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES:
        raise ConfigError(
            f"mlflow.tracking_uri={uri}: unknown scheme '{scheme}'; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (e.g. sqlite:///outputs/mlflow.db)"
        )
    return uri


def sqlite_file(tracking_uri: str) -> Path | None:
    return Path(tracking_uri[len(SQLITE) :]) if tracking_uri.startswith(SQLITE) else None


# --- is anyone there, and may we come in ----------------------------------------------------
def auth_headers(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The Authorization header MLflow's own client would send, from the same variables."""
    user, password = environ.get(USERNAME_ENV), environ.get(PASSWORD_ENV)
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    if token := environ.get(TOKEN_ENV):
        return {"Authorization": f"Bearer {token}"}
    return {}


def unauthorized(tracking_uri: str, code: int, environ: Mapping[str, str] = os.environ) -> str:
    """The one line for a 401 or 403: what was sent, and the fix."""
    head = f"{KEY}={redact(tracking_uri, '***@')}: the tracking server"
    if code == 403:
        who = environ.get(USERNAME_ENV) or "these credentials"
        return (
            f"{head} refused access to {who} (HTTP 403); ask its admin for permission, or set "
            f"{CREDENTIALS_FIX} to another account"
        )
    if auth_headers(environ):
        sent = f"{USERNAME_ENV}={environ[USERNAME_ENV]}" if environ.get(USERNAME_ENV) else TOKEN_ENV
        return f"{head} rejected the credentials ({sent}; HTTP 401); check {CREDENTIALS_FIX}"
    return f"{head} asks for credentials (HTTP 401); set {CREDENTIALS_FIX} in the environment"


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming the URI, when no server answers there (MLflow's client would retry
    for minutes first), or when it answers 401/403 to the credentials MLflow's client would
    send. Any other HTTP answer counts: only the connection and the door matter here."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + _PROBE
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError as exc:
        # MLFLOW_TRACKING_AUTH names a plugin that signs requests its own way: not ours to judge
        if exc.code in (401, 403) and not os.environ.get("MLFLOW_TRACKING_AUTH"):
            raise StoreUnauthorized(unauthorized(tracking_uri, exc.code)) from None
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)), "***@")
        raise StoreUnreachable(
            f"mlflow.tracking_uri={redact(tracking_uri, '***@')}: no tracking server answers "
            f"there ({reason}); start it (mlflow server --host 127.0.0.1 --port PORT "
            "--backend-store-uri sqlite:///mlflow.db) or set mlflow.tracking_uri to one that runs"
        ) from None


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the tracking server could not be reached (after MLflow's own
    retries): a refused or timed-out connection, or a 5xx answer. Anything else is a real
    error of the request."""
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("requests", "urllib3")):
        return True
    text = str(exc)
    return (
        type(exc).__name__ == "MlflowException"
        and "API request to" in text
        and (
            "failed with exception" in text
            or "timeout exception" in text
            or "failed with error code 5" in text
        )
    )
