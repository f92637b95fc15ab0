"""The simulated host answers the unmodified pypsrp client over real sockets, as a Windows host would."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool

from hypervsim import CMDLETS
from hypervsim.keyprotector import KeyProtector
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.sim import sim_run as run
from tests.plugins.sim import sim_wsman as wsman


def names(objects: list[Any]) -> list[str]:
    return [o.adapted_properties.get("Name") or o.extended_properties.get("Name") for o in objects]


def test_get_vm_over_ntlm_with_message_encryption(sim_host: Any) -> None:
    h = sim_host("healthy")
    with RunspacePool(wsman(h)) as pool:
        ps = run(pool, ("Get-VM", {}))
        assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors
        assert set(names(ps.output)) == {vm.name for vm in h.model.vms.values()}
        assert "Microsoft.HyperV.PowerShell.VirtualMachine" in ps.output[0].types
        private_data: Any = pool.application_private_data
        version = private_data.data["PSVersionTable"]
        assert version["PSEdition"] == "Desktop" and version["PSVersion"].startswith("5.1.")
    assert h.command_log == [{"cmdlet": "Get-VM", "parameters": {}, "outcome": "ok"}]


def test_first_pipeline_of_a_session_reports_module_preparation(sim_host: Any) -> None:
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        first, second = run(pool, ("Get-VM", {})), run(pool, ("Get-VM", {}))
    assert [p.activity for p in first.streams.progress] == ["Preparing modules for first use."]
    assert second.streams.progress == []


def test_basic_over_verified_https(sim_host: Any) -> None:
    h = sim_host("healthy", https=True, auth="basic")
    assert h.url.startswith("https://127.0.0.1:") and h.ca_file
    for server in ("127.0.0.1", "localhost"):  # both are in the certificate's subject alternative names
        with RunspacePool(wsman(h, server=server)) as pool:
            assert run(pool, ("Get-VMHost", {})).output[0].adapted_properties["Name"] == h.name


def test_https_certificate_is_not_trusted_without_the_lab_ca(sim_host: Any) -> None:
    h = sim_host("healthy", https=True, auth="basic")
    with pytest.raises(requests.exceptions.SSLError):
        RunspacePool(wsman(h, cert_validation=True)).open()


def test_basic_is_refused_over_plain_http(tmp_path: Any) -> None:
    from hypervsim import start_host

    with pytest.raises(ValueError, match="only offered over HTTPS"):
        start_host("HV01", tmp_path, auth="basic", https=False)


@pytest.mark.parametrize(("https", "auth"), [(False, "negotiate"), (True, "basic"), (True, "negotiate")])
def test_wrong_password_gets_401(sim_host: Any, https: bool, auth: str) -> None:
    h = sim_host("fresh", https=https, auth=auth)
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(h, password="not-the-password")).open()
    assert h.command_log == []


def test_unknown_user_gets_401(sim_host: Any) -> None:
    h = sim_host("fresh")
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(h, username="mallory")).open()


def test_plain_soap_over_http_is_refused_like_allow_unencrypted_false(sim_host: Any) -> None:
    h = sim_host("fresh")
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(h, encryption="never")).open()


def test_statements_and_pipes(sim_host: Any) -> None:
    h = sim_host("healthy")
    vm = next(iter(h.model.vms.values()))
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", vm.name).add_cmdlet("Get-VMSecurity")
        ps.add_statement().add_cmdlet("Get-VMHost")
        output = ps.invoke()
    assert [o.types[0] for o in output] == [
        "Microsoft.HyperV.PowerShell.VMSecurity",
        "Microsoft.HyperV.PowerShell.VMHost",
    ]
    assert [e["cmdlet"] for e in h.command_log] == ["Get-VM", "Get-VMSecurity", "Get-VMHost"]


def test_unknown_command_fails_like_windows(sim_host: Any) -> None:
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        ps = run(pool, ("Get-VM", {}), ("Invoke-Mimikatz", {}))
    assert ps.state == PSInvocationState.FAILED and ps.output == []
    error: Any = ps.streams.error[0]
    assert error.fq_error == "CommandNotFoundException"
    assert error.category == 13  # ObjectNotFound
    assert error.target_object == "Invoke-Mimikatz"
    assert error.exception.types[0] == "System.Management.Automation.CommandNotFoundException"
    assert "is not recognized as the name of a cmdlet" in str(error)
    assert [e["cmdlet"] for e in h.command_log] == ["Invoke-Mimikatz"]  # nothing ran


def test_script_text_is_refused(sim_host: Any) -> None:
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_script("Get-VM | Remove-VM -Force")
        ps.invoke()
    assert ps.state == PSInvocationState.FAILED
    error: Any = ps.streams.error[0]
    assert error.fq_error == "ScriptsNotAllowed"
    assert error.exception.types[0] == "System.Management.Automation.ParseException"
    assert h.model.vms  # nothing was removed


def test_non_terminating_error_carries_windows_error_record(sim_host: Any) -> None:
    h = sim_host("healthy")
    with RunspacePool(wsman(h)) as pool:
        ps = run(pool, ("Get-VM", {"Name": "NoSuchVM"}))
    assert ps.state == PSInvocationState.COMPLETED and len(ps.streams.error) == 1
    error: Any = ps.streams.error[0]
    assert error.fq_error.endswith(",Microsoft.HyperV.PowerShell.Commands.GetVM")
    assert error.exception.types[-1] == "System.Object" and len(error.exception.types) >= 3
    assert error.target_object == "NoSuchVM"
    assert error.activity == "Get-VM"
    assert error.invocation_name == "Get-VM"
    assert h.command_log[-1]["outcome"].startswith("error: ")


def test_cmdlet_list_is_exported() -> None:
    assert {"Get-VM", "Start-VM", "New-HgsGuardian", "Get-HgsClientConfiguration"} <= CMDLETS


def test_is_alive_uses_transfer_get(sim_host: Any) -> None:
    h = sim_host("fresh")
    pool = RunspacePool(wsman(h))
    pool.open()
    assert pool.is_alive()
    pool.close()


def test_long_poll_waits_without_busy_loop_then_times_out(sim_host: Any) -> None:
    h = sim_host("healthy")
    h.faults.slow_cmdlet = ("Get-VM", 30)
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM")
        ps.begin_invoke()
        before, cpu_before, began = h.request_count, time.process_time(), time.monotonic()
        with pytest.raises(WSManFaultError) as fault:
            pool._receive(ps.id, timeout=2)
        assert fault.value.code == 2150858793
        assert time.monotonic() - began >= 2
        assert h.request_count == before + 1  # one request held for the whole timeout
        assert time.process_time() - cpu_before < 0.5  # simulator and client threads slept meanwhile
        ps.stop()


def test_ctrl_c_stops_a_slow_cmdlet(sim_host: Any) -> None:
    h = sim_host("healthy")
    h.faults.slow_cmdlet = ("Stop-VM", 60)
    vm = next(v for v in h.model.vms.values() if v.state == "Running")
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Stop-VM").add_parameter("Name", vm.name).add_parameter("Force")
        ps.begin_invoke()
        started = time.monotonic()
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        # The pool stays usable and the stopped cmdlet never ran.
        assert run(pool, ("Get-VM", {"Name": vm.name})).output
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while not h.command_log or h.command_log[-1]["cmdlet"] != "Get-VM":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert {"cmdlet": "Stop-VM", "parameters": {"Name": vm.name, "Force": True}, "outcome": "stopped"} in h.command_log
    assert h.model.vm(vm.name).state == "Running"


def import_pfx(pool: RunspacePool, password: str) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_cmdlet("Import-PfxCertificate")
    ps.add_parameter("FilePath", r"C:\Windows\Temp\signing.pfx")
    ps.add_parameter("CertStoreLocation", r"Cert:\LocalMachine\Shielded VM Local Certificates")
    ps.add_parameter("Password", pool.serialize(password, _secure_string()))
    ps.invoke()
    return ps


def test_secure_string_parameter_is_decrypted_after_key_exchange(sim_host: Any) -> None:
    from hypervsim.scenarios import previous_guardian_backup

    h = sim_host("reinstalled")
    signing, _encryption, password = previous_guardian_backup(h)
    with RunspacePool(wsman(h)) as pool:
        pool.exchange_keys()
        run(pool, ("New-Item", {"Path": r"Cert:\LocalMachine\Shielded VM Local Certificates"}))
        run(pool, ("Set-Content", {"Path": r"C:\Windows\Temp\signing.pfx", "Value": signing, "Encoding": "Byte"}))
        wrong = import_pfx(pool, "not-the-pfx-password")
        import_pfx(pool, password)
    # The simulator decrypted both: the wrong one failed like Windows, the right one imported.
    assert [e["outcome"] == "ok" for e in h.command_log] == [True, True, False, True]
    assert [e["parameters"]["Password"] for e in h.command_log[2:]] == ["********", "********"]
    assert password not in repr(h.command_log)
    bound = wrong.streams.error[0].invocation_info.adapted_properties["BoundParameters"]  # type: ignore[attr-defined]
    assert "not-the-pfx-password" not in repr(bound) and "Password" not in bound
    assert bound["FilePath"] == r"C:\Windows\Temp\signing.pfx"


def _secure_string() -> Any:
    from pypsrp.complex_objects import ObjectMeta

    return ObjectMeta("SS")


def test_concurrent_pools_on_one_host(sim_host: Any) -> None:
    h = sim_host("healthy")
    results: list[int] = []

    def client() -> None:
        with RunspacePool(wsman(h)) as pool:
            for _ in range(3):
                results.append(len(run(pool, ("Get-VM", {})).output))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [len(h.model.vms)] * 12


def test_output_is_chunked_to_the_clients_max_envelope_size(sim_host: Any) -> None:
    h = sim_host("healthy", https=True, auth="basic")
    client = wsman(h, max_envelope_size=8192)
    sizes: list[int] = []
    send = client.transport.send

    def recording_send(message: bytes, **kw: Any) -> bytes:
        response = send(message, **kw)
        sizes.append(len(response))
        return response

    client.transport.send = recording_send  # type: ignore[method-assign]
    with RunspacePool(client) as pool:
        ps = run(pool, ("Get-VM", {}), ("Get-VM", {}), ("Get-VMHost", {}), ("Get-HgsGuardian", {}))
    assert len(ps.output) == 2 * len(h.model.vms) + 1 + len(h.model.guardians)
    assert sum(sizes) > 3 * 8192  # the output really needed several responses
    assert max(sizes) <= 8192


def _replies_of(client: Any) -> list[int]:
    """The sizes of the host's replies to `client`, as they arrive (decrypted SOAP)."""
    sizes: list[int] = []
    send = client.transport.send

    def recording_send(message: bytes, **kw: Any) -> bytes:
        response = send(message, **kw)
        sizes.append(len(response))
        return response

    client.transport.send = recording_send
    return sizes


def test_many_small_outputs_fill_a_reply_no_larger_than_the_clients_max_envelope_size(sim_host: Any) -> None:
    h = sim_host("healthy")
    client = wsman(h, max_envelope_size=16384)
    sizes = _replies_of(client)
    with RunspacePool(client) as pool:
        # One statement after another: each answer is a payload (a stream in the reply) of its own.
        ps = run(pool, *[("Select-Object", {"InputObject": i}) for i in range(300)])
    assert ps.output == list(range(300))
    assert sum(sizes) > 3 * 16384  # several replies, each packed with many small outputs
    assert max(sizes) <= 16384  # every stream's wrapper and base64 counted (MS-WSMV 3.1.4.1.7)


def test_a_client_asking_for_larger_envelopes_gets_windows_default_500_kb_at_most(sim_host: Any) -> None:
    h = sim_host("healthy")
    guardian = h.model.guardian("UntrustedGuardian")
    signing, encryption = h.model.store[guardian.signing.thumbprint], h.model.store[guardian.encryption.thumbprint]
    with h.model.changing() as model:
        for i in range(200):
            model.add_vm(
                f"Big-{i:03}", tpm_enabled=True, key_protector=KeyProtector.create(signing, encryption).to_bytes()
            )
    client = wsman(h, max_envelope_size=4 * 1024 * 1024)
    sizes = _replies_of(client)
    with RunspacePool(client) as pool:
        ps = PowerShell(pool).add_cmdlet("Get-VM").add_cmdlet("Get-VMKeyProtector")
        ps.invoke()
    assert len(ps.output) == len(h.model.vms)
    assert sum(sizes) > 512000 and max(sizes) <= 512000  # MaxEnvelopeSizekb 500, the service's default


def test_a_max_envelope_size_below_8192_is_an_encoding_limit_fault(sim_host: Any) -> None:
    h = sim_host("healthy")
    with pytest.raises(WSManFaultError) as caught:
        RunspacePool(wsman(h, max_envelope_size=4096)).open()
    assert caught.value.code == 2150858817 and "MaxEnvelopeSize" in caught.value.message


def test_client_input_is_the_first_commands_pipeline_input(sim_host: Any) -> None:
    h = sim_host("healthy")
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Test-Path")
        output = ps.invoke(input=(path for path in [r"C:\Windows\Temp", r"C:\No\Such\Folder"]))
    assert output == [True, False]


def test_shells_idle_longer_than_idle_timeout_are_deleted(sim_host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import hypervsim.wsman

    h = sim_host("fresh")
    forgotten = RunspacePool(wsman(h))
    forgotten.open()
    monkeypatch.setattr(hypervsim.wsman, "IDLE_TIMEOUT", 0.0)
    with RunspacePool(wsman(h)) as pool:  # a new shell sweeps the idle ones
        assert run(pool, ("Get-VMHost", {})).output
    with pytest.raises(WSManFaultError) as fault:
        run(forgotten, ("Get-VMHost", {}))
    assert fault.value.code == 2150858843


@pytest.mark.parametrize(
    ("auth", "user"), [("ntlm", "labadmin"), ("negotiate", "HV01\\labadmin"), ("negotiate", "LABADMIN")]
)
def test_ntlm_and_the_user_name_forms_windows_accepts(sim_host: Any, auth: str, user: str) -> None:
    h = sim_host("fresh", name="HV01")
    with RunspacePool(wsman(h, auth=auth, username=user)) as pool:
        assert run(pool, ("Get-VMHost", {})).output[0].adapted_properties["Name"] == "HV01"


def test_lab_hosts_share_the_lab_and_find_each_other(sim_lab: Any) -> None:
    # An NTLM session moving a VM to its peer: the lab's wiring is the subject here, not the second hop.
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = lab.host("HV01"), lab.host("HV02")
    vm = next(v for v in source.model.vms.values() if not v.tpm_enabled)  # a TPM VM needs its guardian there
    with RunspacePool(wsman(source)) as pool:
        ps = run(pool, ("Move-VM", {"Name": vm.name, "DestinationHost": "HV02", "IncludeStorage": None}))
        assert ps.state == PSInvocationState.COMPLETED and not ps.streams.error
    assert vm.id in target.model.vms and vm.id not in source.model.vms
    assert source.model.files.share == target.model.files.share == lab.share


def test_terminate_signal_ends_a_command(sim_host: Any) -> None:
    from pypsrp.shell import SignalCode

    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        ps = run(pool, ("Get-VMHost", {}))
        ps.close()  # Signal Terminate
        with pytest.raises(WSManFaultError) as fault:
            pool.shell.signal(SignalCode.TERMINATE, str(ps.id).upper())
        assert fault.value.code == 2150858843


def test_a_host_that_went_down_and_up_has_forgotten_its_shells(sim_host: Any) -> None:
    h = sim_host("fresh")
    pool = RunspacePool(wsman(h))
    pool.open()
    assert pool.is_alive()
    h.down()
    h.up()
    assert not pool.is_alive()  # unknown shell: the pool is gone, as after a reboot


def test_a_cmdlet_that_crashes_fails_its_pipeline_without_a_stack_trace(
    sim_host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hypervsim.cmdlets
    import hypervsim.psrp

    def broken(invocation: Any) -> list[Any]:
        raise KeyError("secret internals")

    monkeypatch.setitem(hypervsim.cmdlets.CMDLETS, "Get-Broken", broken)
    monkeypatch.setitem(hypervsim.psrp.CANONICAL_NAMES, "get-broken", "Get-Broken")
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        ps = run(pool, ("Get-Broken", {}))
        assert ps.state == PSInvocationState.FAILED
        error: Any = ps.streams.error[0]
        assert error.fq_error == "SimulatorInternalError" and "secret internals" not in str(error)
        assert run(pool, ("Get-VMHost", {})).output  # the pool survives


def test_a_pipeline_over_a_host_without_vms_ends_empty_not_failed(sim_host: Any) -> None:
    h = sim_host("fresh")
    h.model.vms.clear()
    with RunspacePool(wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_cmdlet("Get-VMKeyProtector")
        ps.add_statement().add_cmdlet("Get-VM").add_cmdlet("Get-VMSecurity").add_cmdlet("Select-Object")
        ps.add_parameter("Property", ["VMName"])
        ps.add_statement().add_cmdlet("Get-VMKeyProtector")  # first in its statement: the parameter is mandatory
        ps.invoke()
    assert ps.state == PSInvocationState.FAILED and ps.output == []
    assert [e["outcome"].split(",")[0] for e in h.command_log] == [
        "ok", "ok", "ok", "ok", "ok", "error: MissingMandatoryParameter"
    ]  # fmt: skip
