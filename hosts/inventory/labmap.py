"""The lab as a picture: hosts → guardians → VMs, drawn as SVG by a template (templates/inventory/_lab_map.html) from
the stored analysis, with where each guardian's keys are, its escrow, and each VM's risk.

Bounded whatever the size of the lab: at most MAX_HOSTS hosts, MAX_GUARDIANS guardians and MAX_VMS VMs per guardian
are drawn; the rest is summarised ("+12 more hosts", "+40 VMs") with a link to the list that shows them. A constant
number of queries (six), so a 200-host lab draws as fast as a 4-host one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hosts.models import Host

from . import rules
from .models import KeyHolding, KeyProtectorEntry, KnownGuardian, Mark

MAX_HOSTS = 12
MAX_GUARDIANS = 16
MAX_VMS = 4  # per guardian
ROW = 30  # px between two nodes of a column
TOP = 40
NODE_WIDTH, NODE_HEIGHT = 220, 22
COLUMNS = (10, 340, 670)  # x of the hosts, guardians and VMs columns
WIDTH = COLUMNS[2] + NODE_WIDTH + 10


@dataclass
class Node:
    label: str
    url: str
    state: str  # the CSS class: ok | warn | bad | muted | marked
    title: str  # the tooltip: what the state means
    x: int = 0
    y: int = 0

    @property
    def mid_y(self) -> int:
        return self.y + NODE_HEIGHT // 2

    @property
    def right(self) -> int:
        return self.x + NODE_WIDTH


@dataclass
class Edge:
    start: Node
    end: Node
    state: str  # keys | public (a guardian without private keys) | missing (VMs here need it, no keys here) | sealed

    @property
    def path(self) -> str:
        """A cubic curve from the right of one node to the left of the next (numbers only: safe in an attribute)."""
        x1, y1, x2, y2 = self.start.right, self.start.mid_y, self.end.x, self.end.mid_y
        middle = (x1 + x2) // 2
        return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"


@dataclass
class LabMap:
    hosts: list[Node] = field(default_factory=list)
    guardians: list[Node] = field(default_factory=list)
    vms: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @property
    def height(self) -> int:
        columns = (self.hosts, self.guardians, self.vms)
        return TOP + ROW * max([len(c) for c in columns] + [1]) + 10

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def headings(self) -> list[tuple[int, str]]:
        headings = (_("Hosts"), _("Guardians (keys · escrow)"), _("VMs sealed to them"))
        return list(zip(COLUMNS, headings, strict=True))


def guardian_state(guardian: KnownGuardian, marked: bool) -> tuple[str, str]:
    if marked:
        return "marked", _("marked lost or retired")
    if guardian.key_host_count == 0:
        if guardian.escrowed:
            return "warn", _("keys on no host; escrowed")
        return "bad", _("keys on no host, not escrowed")
    count = {"count": guardian.key_host_count}
    if not guardian.escrowed:
        return "warn", _("keys on %(count)d host(s), not escrowed") % count
    return "ok", _("keys on %(count)d host(s), escrowed") % count


def vm_state(entry: KeyProtectorEntry, marked: bool) -> tuple[str, str]:
    facts = getattr(entry.vm, "facts", None)
    risk = facts.risk if facts is not None else ""
    if marked:
        return "marked", _("marked lost or retired")
    if risk == "vm_cannot_start":
        return "bad", _("can start on no registered host")
    if risk == "single_copy":
        return "warn", _("its keys are on one host only, not escrowed")
    return "ok", _("can start; keys safe")


def lab_map(hosts: list[Host], more_hosts: int = 0) -> LabMap:
    """The picture of these hosts (already chosen and ordered by the caller: at most MAX_HOSTS are drawn), the
    guardians they hold or their VMs are sealed to, and the first VMs of each guardian."""
    drawn, hidden = hosts[:MAX_HOSTS], more_hosts + max(0, len(hosts) - MAX_HOSTS)
    picture = LabMap(
        hosts=[Node(h.name, f"/hosts/{h.pk}/", "muted", _("host %(name)s") % {"name": h.name}) for h in drawn]
    )
    by_host = {h.pk: node for h, node in zip(drawn, picture.hosts, strict=True)}
    holdings = list(KeyHolding.objects.filter(host__in=drawn).select_related("guardian").order_by("guardian_id"))
    owners = KeyProtectorEntry.objects.filter(vm__host__in=drawn, owner=True).order_by()
    needed = set(owners.values_list("vm__host_id", "guardian_id").distinct())  # (host, the guardian its VMs need)
    guardian_ids = {h.guardian_id for h in holdings} | {guardian_id for _host, guardian_id in needed}
    guardians = _worst_first(KnownGuardian.objects.filter(pk__in=guardian_ids))
    marks = _marks(drawn)
    shown = guardians[:MAX_GUARDIANS]
    nodes = {}
    for guardian in shown:
        state, title = guardian_state(guardian, guardian.pair in marks["guardians"])
        name = rules.shown_name(guardian.display_name, guardian.subject)
        nodes[guardian.pk] = Node(name, f"/guardians/{guardian.key}/", state, title)
    picture.guardians = list(nodes.values())
    for holding in holdings:
        if holding.guardian_id in nodes:
            kind = "keys" if holding.has_private_keys else "public"
            picture.edges.append(Edge(by_host[holding.host_id], nodes[holding.guardian_id], kind))
    held = {(h.host_id, h.guardian_id) for h in holdings}
    for host_id, guardian_id in sorted(needed - held):  # its VMs here need a guardian this host does not hold at all
        if guardian_id in nodes:
            picture.edges.append(Edge(by_host[host_id], nodes[guardian_id], "missing"))
    _add_vms(picture, nodes, marks["vms"])
    if len(guardians) > MAX_GUARDIANS:  # what is not drawn, summarised at the foot of its column
        more = len(guardians) - MAX_GUARDIANS
        label = ngettext("+%(count)d more guardian", "+%(count)d more guardians", more) % {"count": more}
        picture.guardians.append(Node(label, "/guardians/", "muted", ""))
    if hidden:
        label = ngettext("+%(count)d more host", "+%(count)d more hosts", hidden) % {"count": hidden}
        picture.hosts.append(Node(label, "/hosts/", "muted", ""))
    _place(picture)
    return picture


def _worst_first(guardians: QuerySet[KnownGuardian]) -> list[KnownGuardian]:
    """Guardians whose keys are nowhere first, then those not escrowed: what needs attention is drawn."""
    return sorted(guardians, key=lambda g: (g.key_host_count > 0, g.escrowed, g.sort_name))


def _marks(hosts: list[Host]) -> dict[str, set[tuple[Any, str]]]:
    found: dict[str, set[tuple[Any, str]]] = {"vms": set(), "guardians": set()}
    rows = Mark.objects.filter(host__in=hosts) | Mark.objects.filter(signing_thumbprint__gt="")
    for mark in rows.order_by():
        if mark.vm_id:
            found["vms"].add((mark.host_id, mark.vm_id))
        else:
            found["guardians"].add((mark.signing_thumbprint, mark.encryption_thumbprint))
    return found


def _add_vms(picture: LabMap, nodes: dict[int, Node], marked: set[tuple[Any, str]]) -> None:
    """The first MAX_VMS VMs of each drawn guardian (by name), and how many more: two queries."""
    listed = KeyProtectorEntry.objects.filter(guardian__in=list(nodes), listed=True)
    counts = dict(listed.order_by().values_list("guardian_id").annotate(n=Count("pk")))
    ranked = listed.select_related("vm", "vm__host", "vm__facts").annotate(
        rank=Window(RowNumber(), partition_by=[F("guardian_id")], order_by=[F("vm__name"), F("vm__host__name")])
    )
    per_guardian: dict[int, list[KeyProtectorEntry]] = defaultdict(list)
    for first in ranked.filter(rank__lte=MAX_VMS).order_by("guardian_id", "rank"):
        per_guardian[first.guardian_id].append(first)
    for guardian_id, node in nodes.items():
        for entry in per_guardian[guardian_id]:
            vm = entry.vm
            state, title = vm_state(entry, (vm.host_id, vm.vm_id) in marked)
            label = _("%(name)s on %(host)s") % {"name": vm.name, "host": vm.host.name}
            vm_node = Node(label, f"/vms/{vm.pk}/", state, title)
            picture.vms.append(vm_node)
            picture.edges.append(Edge(node, vm_node, "sealed"))
        rest = counts.get(guardian_id, 0) - len(per_guardian[guardian_id])
        if rest > 0:
            key = node.url.rstrip("/").rsplit("/", 1)[-1]
            label = ngettext("+%(count)d more VM", "+%(count)d more VMs", rest) % {"count": rest}
            summary = Node(label, f"/vms/?guardian={key}", "muted", "")
            picture.vms.append(summary)
            picture.edges.append(Edge(node, summary, "sealed"))


def _place(picture: LabMap) -> None:
    for x, column in zip(COLUMNS, (picture.hosts, picture.guardians, picture.vms), strict=True):
        for index, node in enumerate(column):
            node.x, node.y = x, TOP + index * ROW
