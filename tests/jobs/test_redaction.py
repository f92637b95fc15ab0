"""What people read when a job fails unexpectedly: the one-line message of `clean_exception`, free of the console's
own paths and of secrets, yet still showing the host paths and addresses they need to act on."""

from __future__ import annotations

import base64
import os

from jobs.redaction import MASK, Redactor, clean_exception


def test_a_crash_inside_a_library_does_not_say_where_the_console_is_installed() -> None:
    exc = RuntimeError(
        'File "/opt/guardian-console/.venv/lib/python3.12/site-packages/pypsrp/powershell.py", line 12: bad state'
    )
    assert clean_exception(exc) == 'File "[path]", line 12: bad state'


def test_a_missing_file_under_the_var_directory_is_reported_without_its_path() -> None:
    exc = FileNotFoundError(2, "No such file", "/opt/guardian-console/var/vault/key.bin")
    message = clean_exception(exc)
    assert message == "[Errno 2] No such file: '[path]'"
    assert "/opt" not in message and "vault" not in message


def test_a_path_given_as_an_option_value_is_removed_too() -> None:
    assert clean_exception(OSError("cannot open --state=/var/lib/console/state.db")) == "cannot open --state=[path]"


def test_the_address_of_the_host_stays_readable() -> None:
    text = "Connection to http://hv01.lab.example:5985/wsman refused; also tried https://10.0.0.5:5986/wsman/x/y"
    assert clean_exception(ConnectionError(text)) == text


def test_a_windows_path_on_the_host_stays_so_the_user_can_find_the_file() -> None:
    text = (
        r"Could not write C:\ProgramData\GuardianConsole\escrow\HV01-signing.pfx nor \\LAB\share\pfx\HV01.pfx"
        " nor C:/Temp/out/x.pfx in Cert:/LocalMachine/Shielded VM Local Certificates"
    )
    assert clean_exception(OSError(text)) == text


def test_a_password_in_the_message_is_masked() -> None:
    message = clean_exception(ValueError("bad option pfx_password=Tr0ub4dor&3 for host HV01"))
    assert message == f"bad option pfx_password={MASK} for host HV01"


def test_pfx_bytes_in_the_message_are_removed_whole_even_with_slashes_in_them() -> None:
    blob = base64.b64encode(os.urandom(600)).decode()
    blob = blob[:100] + "+/" + blob[100:300] + "/abc/def" + blob[300:]  # slashes that could look like a path
    message = clean_exception(ValueError(f"cannot parse {blob} as PFX"))
    assert message == "cannot parse [binary data removed] as PFX"


def test_only_the_first_line_is_kept_and_an_empty_message_names_the_error() -> None:
    assert clean_exception(KeyError()) == "KeyError"
    assert clean_exception(RuntimeError("first line /srv/app/x\nTraceback /srv/app/y")) == "first line [path]"


def test_known_secrets_are_masked_wherever_they_appear() -> None:
    redactor = Redactor(["s3cr3t-value", "abc"])  # too short a value is not masked: it would mask noise
    assert redactor.redact("got s3cr3t-value and abc") == f"got {MASK} and abc"
