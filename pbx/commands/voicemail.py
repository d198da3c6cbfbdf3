"""`helpline voicemail list|export|delete|keygen`: the info-line staff's side of voicemail.

Messages are kept encrypted to the staff's public key (setting `voicemail_recipients`); only
`export` with the staff's identity (private key) file turns one back into a WAV. `keygen` makes
a key pair: run it on the staff's own machine and give the service only the public key.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyrage import x25519

from pbx.config import ConfigError, Settings, load_settings
from pbx.private_files import open_private
from pbx.voicemail.store import VoicemailError, VoicemailStore, parse_identities


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vm = subparsers.add_parser(
        "voicemail", help="list, export (decrypt) and delete voicemail messages"
    )
    sub = vm.add_subparsers(dest="voicemail_command", required=True, metavar="ACTION")

    def with_settings(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="the service's TOML settings file")
        p.add_argument("--state-dir", type=Path, help="the service's data directory")

    lst = sub.add_parser("list", help="messages kept now: id, line, time, length, deleted after")
    with_settings(lst)
    lst.set_defaults(func=_list)

    exp = sub.add_parser(
        "export",
        help="decrypt a message into a WAV with the staff's identity (private key) file",
        description="Example: helpline voicemail export 20261126T141800Z-0a1b2c3d4e5f "
        "--identity ~/infolijn.key -o message.wav",
    )
    exp.add_argument("id", metavar="ID")
    exp.add_argument(
        "--identity", "-i", type=Path, required=True, help="age identity file (private key)"
    )
    exp.add_argument("--output", "-o", type=Path, help="WAV to write (default: ID.wav)")
    with_settings(exp)
    exp.set_defaults(func=_export)

    rm = sub.add_parser("delete", help="delete messages (e.g. once the caller was called back)")
    rm.add_argument("ids", nargs="+", metavar="ID")
    with_settings(rm)
    rm.set_defaults(func=_delete)

    gen = sub.add_parser(
        "keygen",
        help="make a staff key pair: the private key into a file, the public key printed",
        description="Run this on the staff's machine, not on the server. Keep the file "
        "private; set the printed public key as voicemail_recipients in the service.",
    )
    gen.add_argument("--output", "-o", type=Path, required=True, help="identity file to create")
    gen.set_defaults(func=_keygen)


def _store(args: argparse.Namespace) -> tuple[VoicemailStore, Settings] | int:
    try:
        settings = load_settings(args.config, state_dir=args.state_dir)
    except ConfigError as exc:
        print(f"helpline voicemail: configuration error: {exc}", file=sys.stderr)
        return 2
    directory = settings.state_dir / "voicemail"
    if directory.exists() and not os.access(directory, os.R_OK | os.X_OK):
        print(
            f"helpline voicemail: cannot read {directory}: run this as the service's user "
            f"(e.g. sudo -u {settings.run_as_user or 'root'} ...)",
            file=sys.stderr,
        )
        return 1
    return VoicemailStore(directory, ()), settings


def _list(args: argparse.Namespace) -> int:
    found = _store(args)
    if isinstance(found, int):
        return found
    store, settings = found
    retention = timedelta(seconds=settings.voicemail_retention)
    messages = store.messages()
    print(f"{'ID':<30} {'LINE':<14} {'RECEIVED (UTC)':<20} {'SECONDS':>7}  DELETED AFTER (UTC)")
    for m in messages:
        print(
            f"{m.id:<30} {m.line:<14} {_utc(m.received):<20} {m.seconds:>7.1f}  "
            f"{_utc(m.received + retention)}"
        )
    print(f"{len(messages)} message(s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    found = _store(args)
    if isinstance(found, int):
        return found
    store = found[0]
    try:
        identities = parse_identities(args.identity.read_text())
        wav = store.decrypt(args.id, identities)
    except (OSError, VoicemailError) as exc:
        print(f"helpline voicemail export: {exc}", file=sys.stderr)
        return 1
    output: Path = args.output or Path(f"{args.id}.wav")
    with open_private(output) as fh:  # a caller's voice: 0600 on the staff's machine too
        fh.write(wav)
    print(f"wrote {output}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    found = _store(args)
    if isinstance(found, int):
        return found
    store = found[0]
    status = 0
    for message_id in args.ids:
        try:
            store.delete(message_id)
            print(f"deleted {message_id}")
        except (OSError, VoicemailError) as exc:
            print(f"helpline voicemail delete: {exc}", file=sys.stderr)
            status = 1
    return status


def _keygen(args: argparse.Namespace) -> int:
    identity = x25519.Identity.generate()
    public = identity.to_public()
    text = f"# created: {_utc(datetime.now(UTC))}\n# public key: {public}\n{identity}\n"
    try:  # never overwrite a key: messages encrypted to it would be lost
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        print(f"helpline voicemail keygen: {exc}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    print(f"private key written to {args.output} (keep it with the staff, never on the server)")
    print(f"public key (set voicemail_recipients to it): {public}")
    return 0


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
