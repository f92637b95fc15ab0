"""The session worlds a migration can run in (issue 10), as two simulated hosts registered in the console.

Every pair is the "migration" lab (HV01 healthy, HV02 fresh) with the second hop as Windows has it (`second_hop`
on, hypervsim's default); they differ in what decides the second hop — domain membership, how the console logs on
and what the domain lets the source delegate:

    lab = ntlm_pair(sim_lab, registered_host)                         # a workgroup, NTLM sessions
    lab = ntlm_pair(sim_lab, registered_host, LAB_DOMAIN)             # a domain, still NTLM sessions
    lab = credssp_pair(sim_lab, registered_host)                      # a domain, CredSSP over HTTPS
    lab = kerberos_pair(kerberos, sim_lab, registered_host, DELEGATED)  # a domain, Kerberos (the test KDC)
    serve_source_share(lab)      # HV01 shares D:\\VMExports to HV01\\vmshare, listed in the console for both hosts

Each returns the lab with `source`, `target` (the SimHosts) and `source_host`, `target_host` (the console's Hosts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hosts.models import LabShare
from hypervsim.logon import MIGRATION_SERVICE, Delegation
from hypervsim.model import MIGRATION_CREDSSP, MIGRATION_KERBEROS
from hypervsim.scenarios import LAB_DOMAIN
from tests.plugins.kdc import HOST_NAME
from tests.plugins.kdc import PASSWORD as KERBEROS_PASSWORD
from tests.plugins.kdc import USER as KERBEROS_USER

# The source's own share for the workgroup method ("pull"), and the local account of HV01 that may read it.
SHARE, FOLDER = r"\\HV01\VMExports", r"D:\VMExports"
ACCOUNT, PASSWORD = r"HV01\vmshare", "Sh4re-only-Pa55!"
CREDSSP_ACCOUNT = r"LAB\hvconsole"
# What a domain administrator grants HV01's computer account for a live migration to HV02 (msDS-AllowedToDelegateTo,
# with protocol transition: the console's tickets are not forwardable).
TO_HV02 = (f"{MIGRATION_SERVICE}/HV02", "cifs/HV02")
DELEGATED = Delegation(TO_HV02, any_protocol=True)


def ntlm_pair(
    sim_lab: Callable[..., Any],
    registered_host: Callable[..., Any],
    domain: str | None = None,
    migration_authentication: str = MIGRATION_KERBEROS,
) -> Any:
    """The console reaches both hosts with Negotiate (NTLM); the hosts are in `domain`, or in a workgroup (None),
    and authenticate migrations with Kerberos (the "migration" lab's) or CredSSP (Hyper-V's default)."""
    lab = sim_lab(scenarios=["migration"])
    for sim in lab.hosts:
        with sim.model.changing() as model:
            model.domain, model.migration_authentication = domain, migration_authentication
    return registered(lab, registered_host)


def credssp_pair(sim_lab: Callable[..., Any], registered_host: Callable[..., Any]) -> Any:
    """Both hosts in lab.test, migrations authenticated with CredSSP, the CredSSP server role on, registered with
    CredSSP over HTTPS (the lab CA verified): the console's sessions hold the account's credentials."""
    lab = sim_lab(scenarios=["migration"], https=True, user=CREDSSP_ACCOUNT)
    for sim in lab.hosts:
        with sim.model.changing() as model:
            model.domain, model.migration_authentication, model.credssp_server = LAB_DOMAIN, MIGRATION_CREDSSP, True
    return registered(lab, registered_host, auth="credssp")


def kerberos_pair(
    kerberos: Any, sim_lab: Callable[..., Any], registered_host: Callable[..., Any], *delegations: Delegation
) -> Any:
    """Both hosts in lab.test with the test KDC's keytab, migrations authenticated with Kerberos, registered with
    Kerberos as the realm's administrator; `delegations` are what the domain lets each host's computer account do
    (HV01's, then HV02's; none when not given)."""
    lab = sim_lab(scenarios=["migration"], keytab=kerberos.keytab)
    for sim, delegation in zip(lab.hosts, delegations, strict=False):
        with sim.model.changing() as model:
            model.delegation = delegation
    return registered(
        lab, registered_host, address=HOST_NAME, auth="kerberos", username=KERBEROS_USER, password=KERBEROS_PASSWORD
    )


def registered(lab: Any, registered_host: Callable[..., Any], **fields: Any) -> Any:
    lab.source, lab.target = lab.hosts
    lab.source_host, lab.target_host = (registered_host(sim, **fields) for sim in lab.hosts)
    return lab


def serve_source_share(lab: Any) -> LabShare:
    """HV01 shares D:\\VMExports, readable by its local account vmshare, and an administrator lists the share with
    that account for both hosts in the console (Hosts › Lab shares): what the workgroup method copies from."""
    lab.source.model.share_folder("VMExports", FOLDER, {ACCOUNT: PASSWORD})
    share = LabShare(path=SHARE, account=ACCOUNT)
    share.set_password(PASSWORD)
    share.save()
    share.hosts.set([lab.source_host, lab.target_host])
    return share
