"""A host served from a capture (`python -m hypervsim serve --capture FILE`): each command the client sends is
answered with the messages the captured host answered the same commands with — output objects, error records and
the pipeline's end state, as their recorded CLIXML — instead of being run against the model.

Captures are what the console's `manage.py capture_host` writes (the format is described in
hosts/remoting/capture.py): per operation its statements (cmdlets with their parameters, a switch as
{"switch": true}, bytes as {"base64": ...}) and the PSRP messages received. Statements are matched whole, names
ignoring case; a command the capture holds no answer to fails, saying so.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psrpcore.types import PSInvocationState, PSRPMessageType

from hypervsim.cmdlets import CmdletError

Statements = list[list[tuple[str, dict[str, Any]]]]  # per statement: (command, named parameters)
_STATE = re.compile(r'<I32 N="PipelineState">(\d+)</I32>')


@dataclass(frozen=True)
class RecordedMessage:
    message_type: PSRPMessageType
    clixml: str

    @property
    def state(self) -> PSInvocationState | None:
        """The pipeline state a PIPELINE_STATE message ends in (None for any other message)."""
        if self.message_type != PSRPMessageType.PipelineState:
            return None
        found = _STATE.search(self.clixml)
        return PSInvocationState(int(found.group(1))) if found else PSInvocationState.Completed


class Capture:
    """The answers of one captured host, by the statements that were sent."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.host = str(data.get("host") or "HV01")
        self.answers: dict[str, list[RecordedMessage]] = {}
        for entry in data.get("operations", []):
            sent = [[(c["cmdlet"], c["parameters"]) for c in statement] for statement in entry["statements"]]
            messages = [_message(m) for m in entry.get("messages", [])]
            if messages:  # an operation that got no answer at all (a dropped connection) cannot be answered again
                self.answers.setdefault(_key(sent, recorded=True), messages)

    @classmethod
    def load(cls, path: Path | str) -> Capture:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def answer(self, statements: Statements) -> list[RecordedMessage] | None:
        return self.answers.get(_key(statements, recorded=False))


def not_captured(commands: list[str]) -> CmdletError:
    return CmdletError(
        f"This host is served from a capture, which holds no answer to: {', '.join(commands)}.",
        "NotInCapture",
        "NotImplemented",
        ["System.NotImplementedException", "System.SystemException"],
    )


def _message(recorded: dict[str, str]) -> RecordedMessage:
    camel = "".join(word.capitalize() for word in recorded["type"].split("_"))  # PIPELINE_OUTPUT: PipelineOutput
    return RecordedMessage(PSRPMessageType[camel], recorded["clixml"])


def _key(statements: Statements, *, recorded: bool) -> str:
    canonical = _recorded_value if recorded else _sent_value
    return json.dumps(
        [
            [[name.lower(), {key.lower(): canonical(value) for key, value in params.items()}] for name, params in s]
            for s in statements
        ],
        sort_keys=True,
    )


def _recorded_value(value: Any) -> Any:
    return value  # already as JSON: {"switch": true}, {"base64": ...}, lists, text, numbers


def _sent_value(value: Any) -> Any:
    """A parameter value as the client sent it, in the capture's JSON spelling."""
    if value is None:  # a switch: PowerShell's API sends it without a value
        return {"switch": True}
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list | tuple):
        return [_sent_value(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return str(value)
