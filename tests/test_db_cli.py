"""`helpline volunteers` end to end, as a subprocess against the embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pbx.db.embedded import EmbeddedPostgres, start_embedded
from pbx.sip.digest import Credential
from tests.helpers.pg_state import pg_state_dir
from tests.helpers.served import HELPLINE


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    with pg_state_dir() as state:
        yield state


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    """Keep the embedded server up while the CLI runs attach to it (as with a running service)."""
    pg = start_embedded(state_dir)
    yield pg
    pg.stop(force=True)


def helpline(
    state_dir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    environ["HELPLINE_STATE_DIR"] = str(state_dir)
    environ.update(env or {})
    return subprocess.run(
        [HELPLINE, "volunteers", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


async def stored_credential(url: str, username: str) -> Credential:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT username, realm, ha1_md5, ha1_sha256, disabled FROM volunteers"
            " WHERE username = $1",
            username,
        )
    finally:
        await conn.close()
    assert row is not None
    return Credential(**dict(row))


async def test_add_list_disable_enable(server: EmbeddedPostgres, state_dir: Path) -> None:
    added = helpline(
        state_dir,
        "add",
        "anna",
        "--password-stdin",
        "--pin-stdin",
        "--name",
        "Anna B",
        "--languages",
        "nl,ar",
        "--region",
        "Utrecht",
        "--skills",
        "113",
        stdin="correct horse battery\n4321\n",
    )
    assert added.returncode == 0, added.stderr
    assert "correct horse battery" not in added.stdout + added.stderr
    assert await stored_credential(server.url, "anna") == Credential.from_password(
        "anna", "helpline", "correct horse battery"
    )

    listed = helpline(state_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [doc] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert doc["username"] == "anna" and doc["name"] == "Anna B"
    assert (doc["languages"], doc["region"], doc["skills"]) == (["nl", "ar"], "Utrecht", ["113"])
    assert (doc["disabled"], doc["pin"]) == (False, True)

    assert helpline(state_dir, "disable", "anna").returncode == 0
    table = helpline(state_dir, "list").stdout.splitlines()
    assert table[0].split() == [
        "USERNAME",
        "NAME",
        "LANGUAGES",
        "REGION",
        "SKILLS",
        "STATUS",
        "PIN",
        "DIGEST",
        "HANDSETS",
    ]
    assert "disabled" in table[1].split()
    assert table[1].split()[-2:] == ["default", "-"]  # MD5 by default, no handset registered
    # a volunteer whose handsets do SHA-256 is challenged with it alone
    assert helpline(state_dir, "set-digest", "anna", "SHA-256").returncode == 0
    [doc] = [json.loads(line) for line in helpline(state_dir, "list", "--json").stdout.splitlines()]
    assert (doc["digest"], doc["handsets"]) == ("SHA-256", [])
    assert helpline(state_dir, "set-digest", "anna", "default").returncode == 0
    assert helpline(state_dir, "set-digest", "anna", "SHA-1").returncode == 2  # usage
    assert (await stored_credential(server.url, "anna")).disabled
    assert helpline(state_dir, "enable", "anna").returncode == 0
    assert not (await stored_credential(server.url, "anna")).disabled
    assert server.url  # the server the CLI attached to is still up for the next test


async def test_errors_have_distinct_exit_codes(server: EmbeddedPostgres, state_dir: Path) -> None:
    ok = helpline(state_dir, "add", "dup", "--password", "first good password")
    assert ok.returncode == 0, ok.stderr
    dup = helpline(state_dir, "add", "dup", "--password-stdin", stdin="another good one\n")
    assert (dup.returncode, "already exists" in dup.stderr) == (3, True)
    unknown = helpline(state_dir, "disable", "nobody")
    assert (unknown.returncode, "no volunteer 'nobody'" in unknown.stderr) == (4, True)
    weak = helpline(state_dir, "add", "weak", "--password-stdin", stdin="short\n")
    assert (weak.returncode, "shorter than 10 characters" in weak.stderr) == (5, True)
    assert "at least 10 characters, at least 4 different ones" in weak.stderr  # the whole rule
    empty = helpline(state_dir, "add", "weak", "--password-stdin", stdin="\n")
    assert (empty.returncode, "empty" in empty.stderr) == (5, True)
    no_password = helpline(state_dir, "add", "weak")
    assert (no_password.returncode, "--password-stdin" in no_password.stderr) == (2, True)
    bad_pin = helpline(state_dir, "set-pin", "dup", "--pin-stdin", stdin="12\n")
    assert bad_pin.returncode == 5
    no_db = helpline(
        state_dir, "list", env={"HELPLINE_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    )
    assert (no_db.returncode, "database unavailable" in no_db.stderr) == (6, True)


async def test_set_password_uses_realm_and_set_pin(
    server: EmbeddedPostgres, state_dir: Path
) -> None:
    assert helpline(state_dir, "add", "bob", "--password", "initial password here!").returncode == 0
    changed = helpline(
        state_dir,
        "set-password",
        "bob",
        "--password-stdin",
        stdin="the new secret phrase\n",
        env={"HELPLINE_SIP_REALM": "luisterlijn"},
    )
    assert changed.returncode == 0, changed.stderr
    assert await stored_credential(server.url, "bob") == Credential.from_password(
        "bob", "luisterlijn", "the new secret phrase"
    )
    assert helpline(state_dir, "set-pin", "bob", "--pin-stdin", stdin="9876\n").returncode == 0
    assert '"pin": true' in helpline(state_dir, "list", "--json").stdout.split("bob")[1]
    assert helpline(state_dir, "set-pin", "bob", "--clear").returncode == 0


def test_cli_alone_starts_and_stops_its_server() -> None:
    with pg_state_dir() as state:
        try:
            done = helpline(state, "add", "solo", "--password", "a long enough password")
            assert done.returncode == 0, done.stderr
            # Nobody else uses the server: the CLI stopped the one it started.
            assert not (state / "pg" / "postmaster.pid").exists()
            listed = helpline(state, "list", "--json")
            assert json.loads(listed.stdout)["username"] == "solo"
            assert not (state / "pg" / "postmaster.pid").exists()
        finally:
            EmbeddedPostgres((state / "pg").resolve(), "", None).stop(force=True)


def test_set_changes_languages_skills_and_region_as_the_plan_spells_it(
    server: EmbeddedPostgres, state_dir: Path
) -> None:
    added = helpline(
        state_dir, "add", "rosa", "--password-stdin", "--region", "utrecht",
        stdin="correct horse battery\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    changed = helpline(
        state_dir, "set", "rosa", "--languages", "nl,TR", "--skills", "113", "--region",
        " rotterdam ",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "rosa: languages nl,tr, skills 113, region Rotterdam"
    listed = helpline(state_dir, "list", "--json").stdout.splitlines()
    [rosa] = [v for v in map(json.loads, listed) if v["username"] == "rosa"]
    assert (rosa["languages"], rosa["skills"]) == (["nl", "tr"], ["113"])
    assert rosa["region"] == "Rotterdam"
    cleared = helpline(state_dir, "set", "rosa", "--no-region", "--skills", "")
    assert cleared.stdout.strip() == "rosa: languages nl,tr, skills -, region -"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--region", "Utrech"), "region 'Utrech' is not a region of the dialplan (did you mean "
         "'Utrecht'?); its regions: Amsterdam, Groningen, Rotterdam, Utrecht"),
        (("--languages", "nl,de"), "language de is not spoken in any queue of the dialplan; its "
         "languages: nl, ar, fa, tr"),
        (("--skills", "114"), "skill 114 is asked for by no queue of the dialplan; skills its "
         "queues ask for: 113"),
    ],
)  # fmt: skip
def test_a_profile_the_plan_does_not_have_is_refused_with_what_it_has(
    server: EmbeddedPostgres, state_dir: Path, args: tuple[str, str], message: str
) -> None:
    for command in (["add", "lars", "--password-stdin"], ["set", "anna"]):
        refused = helpline(state_dir, *command, *args, stdin="correct horse battery\n")
        assert refused.returncode == 5, refused.stderr
        assert refused.stderr.strip() == f"helpline volunteers: {message}"
    assert "lars" not in helpline(state_dir, "list").stdout


def test_set_needs_something_to_change_and_a_known_volunteer(
    server: EmbeddedPostgres, state_dir: Path
) -> None:
    nothing = helpline(state_dir, "set", "anna")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    unknown = helpline(state_dir, "set", "nobody-here", "--languages", "nl")
    assert unknown.returncode == 4 and "no volunteer 'nobody-here'" in unknown.stderr
