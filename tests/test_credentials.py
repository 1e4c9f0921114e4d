"""Credentials never ride in a tracking URI: the pure rules, and the command line refused before
Hydra writes anything. The real basic-auth server is test_credentials_e2e's (slow)."""

from __future__ import annotations

import sys

import pytest

from loaderbench import tracking_uri
from loaderbench.config import ConfigError

SECRET = "s3cret-Pa55word"


def test_redact_removes_or_marks_the_userinfo_of_every_uri():
    line = f"x mlflow.tracking_uri=http://bob:{SECRET}@h:5000/a,https://t@h2 sqlite:////a@b/m.db"
    assert tracking_uri.redact(line) == (
        "x mlflow.tracking_uri=http://h:5000/a,https://h2 sqlite:////a@b/m.db"
    )
    assert SECRET not in tracking_uri.redact(line, "***@")
    assert tracking_uri.has_credentials(f"http://bob:{SECRET}@h")
    assert not tracking_uri.has_credentials("sqlite:////data/a@b/mlflow.db")  # a path, not a user


@pytest.mark.parametrize(
    "arg",
    [
        f"mlflow.tracking_uri=http://bob:{SECRET}@127.0.0.1:5000",
        f"+mlflow.tracking_uri=https://bob:{SECRET}@host",
        f"++mlflow.tracking_uri=http://127.0.0.1:1,http://bob:{SECRET}@h",  # a sweep of stores
    ],
)
def test_credentials_on_the_command_line_are_refused_without_repeating_them(arg):
    with pytest.raises(ConfigError) as refused:
        tracking_uri.check_command_line(["-m", arg, "loader.num_workers=0"], environ={})
    line = str(refused.value)
    assert SECRET not in line and "\n" not in line
    assert line.startswith("mlflow.tracking_uri=") and "***@" in line
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line


def test_credentials_in_the_environment_or_a_database_uri_are_refused():
    env = {"MLFLOW_TRACKING_URI": f"http://bob:{SECRET}@h:5000"}
    with pytest.raises(ConfigError, match=r"^MLFLOW_TRACKING_URI=http://\*\*\*@h:5000 holds"):
        tracking_uri.check_command_line([], environ=env)
    with pytest.raises(ConfigError, match="PGPASSWORD") as refused:
        tracking_uri.resolve_tracking_uri(f"postgresql://bob:{SECRET}@db/mlflow", "/tmp")
    assert SECRET not in str(refused.value)
    tracking_uri.check_command_line(["mlflow.tracking_uri=http://127.0.0.1:5000"], environ={})


def test_the_header_and_the_line_follow_mlflows_own_variables():
    basic = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": SECRET}
    assert tracking_uri.auth_headers(basic)["Authorization"].startswith("Basic ")
    assert tracking_uri.auth_headers({"MLFLOW_TRACKING_TOKEN": "tok"}) == {
        "Authorization": "Bearer tok"
    }
    assert tracking_uri.auth_headers({}) == {}
    uri = "http://127.0.0.1:5000"
    none = tracking_uri.unauthorized(uri, 401, {})
    assert none.startswith(f"mlflow.tracking_uri={uri}: the tracking server asks for credentials")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN" in none
    wrong = tracking_uri.unauthorized(uri, 401, basic)
    assert "rejected" in wrong and "bob" in wrong and SECRET not in wrong
    assert "HTTP 403" in tracking_uri.unauthorized(uri, 403, basic)


def test_the_command_refuses_a_password_before_hydra_writes_anything(tmp_path, monkeypatch, capsys):
    from loaderbench import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["loaderbench", "-m", f"mlflow.tracking_uri=http://bob:{SECRET}@127.0.0.1:9"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main.main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: mlflow.tracking_uri=http://***@")
    assert SECRET not in err[0]
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/: nothing written
