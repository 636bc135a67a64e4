"""Admin ▸ Dispositivos: the fleet list (filters, keyset pages) and a device's page (facts,
alerts, hourly chart, current inventory and its changes, USB policy, linked users, Ajustar
acesso, Resetar agente). Every read and change is an API operation; this module only shapes
what those operations answer for the templates."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from common.contracts.devices import MACHINE_STATUSES, PERSONAS, USB_MODES
from common.errors import Conflict, ValidationFailed
from chamados_protocol.inventory import IDENTITY_KEYS
from common.rpc import together
from services.gateway.console import catalogue, charts
from services.gateway.console.formatting import LOCAL_ZONE, parse_time, size
from services.gateway.console.views.home import attempt
from services.gateway.console.web import error_message, page, quote_path

LIST_PAGE_SIZE = 50
LIST_FILTERS = ("empresa", "empresa_busca", "q", "status")
CHART_HOURS = (24, 168)  # the periods offered: a day, a week
CHART_SERIES = (("cpu", "cpu_avg"), ("memory", "memory_avg"))
CHANGES_LISTED = 50  # the newest records on the page; the API pages through the rest
CHANGES_SHOWN = 40  # per kind and record: a reinstalled machine's software can change hundreds of paths
TABLE_ROWS_SHOWN = 1000  # an inventory's longest list (installed packages) stays readable
SHORT_TABLE_ROWS = 20
# what one device page renders of an inventory, whatever its shape (an agent may send 45,000
# keys in one object): values in all, columns per table, characters per value; the rest is
# counted and left to the API (GET /api/admin/machines/{id}/inventory)
INVENTORY_VALUES_SHOWN, INVENTORY_CHARS_SHOWN = 6000, 150_000
TABLE_COLUMNS_SHOWN, VALUE_CHARS_SHOWN = 24, 400
RESET_DIALOG = "resetar"


def device_path(machine_id: str) -> str:
    return f"/admin/dispositivos/{quote_path(machine_id)}"


class DeviceViews:

    # the list --------------------------------------------------------------------------

    @page("GET", "/admin/dispositivos", operation="list_machines")
    def devices_list(self, page_):
        principal = page_.principal
        asked = page_.args(*LIST_FILTERS)
        cursor = page_.args("cursor").get("cursor")
        companies, companies_error = attempt(
            lambda: self.operation("list_companies", principal, query={})["items"])
        picker = CompanyPicker.choose(asked.get("empresa"), asked.get("empresa_busca"), companies,
                                      lambda text: self.operation("list_companies", principal,
                                                                  query={"q": text})["items"])
        filters = {key: value for key, value in asked.items() if key != "empresa"}
        if picker.chosen:
            filters["empresa"] = picker.chosen
        found, problem = {"items": [], "next_cursor": None}, picker.problem
        if picker.ready:
            query = {"limit": str(LIST_PAGE_SIZE), "company_id": picker.chosen,
                     "q": asked.get("q"), "status": asked.get("status"), "cursor": cursor}
            try:
                found = self.operation("list_machines", principal,
                                       query={key: value for key, value in query.items() if value})
            except ValidationFailed as exc:  # a hand-edited address: say which filter is wrong
                problem = error_message(exc)
        names = {company["id"]: company["name"] for company in companies or []}
        return page_.render(
            "devices.html", machines=found["items"], company_names=names, filters=filters,
            picker=picker, companies_error=companies_error, problem=problem, statuses=MACHINE_STATUSES,
            choices=[{"company": company, "url": list_url({**filters, "empresa": company["id"]})}
                     for company in picker.matches or []],
            next_url=list_url({**filters, "cursor": found["next_cursor"]}) if found["next_cursor"] else None,
            first_url=list_url(filters) if cursor else None)

    # a device --------------------------------------------------------------------------

    @page("GET", "/admin/dispositivos/<machine_id>", operation="get_machine")
    def device_page(self, page_, machine_id):
        principal = page_.principal
        machine = self.operation("get_machine", principal, machine_id=machine_id)
        machine_id = machine["id"]
        hours = page_.args("horas").get("horas", str(CHART_HOURS[0]))
        sections = together(  # each section shows what it has, or why it has nothing
            company=lambda: attempt(
                lambda: self.operation("get_company", principal, company_id=machine["company_id"])),
            inventory=lambda: attempt(
                lambda: self.operation("machine_inventory", principal, machine_id=machine_id)),
            versions=lambda: attempt(
                lambda: self.operation("inventory_changes", principal, machine_id=machine_id,
                                       query={"limit": CHANGES_LISTED})),
            metrics=lambda: attempt(
                lambda: self.operation("machine_metrics", principal, machine_id=machine_id,
                                       query={"hours": hours})))
        company, company_error = sections["company"]
        inventory, inventory_error = sections["inventory"]
        versions, versions_error = sections["versions"]
        metrics, metrics_error = sections["metrics"]
        return page_.render(
            "devices_detail.html", machine=machine, device_url=device_path(machine_id),
            company=company, company_error=company_error,
            inventory=inventory, inventory_error=inventory_error,
            sections=inventory_sections(inventory["document"]) if inventory and inventory["document"] else [],
            versions=[readable_changes(version) for version in (versions or {}).get("items", [])],
            versions_more=bool(versions and versions["next_cursor"]), versions_error=versions_error,
            metrics=metrics, metrics_error=metrics_error,
            chart=hourly_chart(metrics) if metrics and metrics["items"] else None,
            chart_hours=CHART_HOURS, alerts=[alert_view(alert) for alert in machine["open_alerts"]],
            usb_modes=USB_MODES, personas=PERSONAS, percent=percent,
            confirm_reset=page_.args("confirmar").get("confirmar") == RESET_DIALOG,
            reset_dialog=RESET_DIALOG)

    @page("POST", "/admin/dispositivos/<machine_id>/usb", operation="set_usb_policy")
    def device_usb_submit(self, page_, machine_id):
        policy = self.operation("set_usb_policy", page_.principal, machine_id=machine_id,
                                body={"mode": page_.field("mode")})
        return page_.redirect(device_path(machine_id), page_.t(
            "devices.usb_requested", mode=page_.t("devices.usb_mode." + policy["mode"])))

    @page("POST", "/admin/dispositivos/<machine_id>/vinculos", operation="add_link")
    def device_link_submit(self, page_, machine_id):
        email = page_.field("email")
        try:
            self.operation("add_link", page_.principal, body={"machine_id": machine_id, "email": email})
        except Conflict as exc:
            if exc.code != "already_assigned":
                raise
            # the code is shared with tickets, whose words do not fit here
            return page_.redirect(device_path(machine_id), page_.t("devices.link_is_assigned"), "error")
        return page_.redirect(device_path(machine_id), page_.t("devices.link_added", email=email))

    @page("POST", "/admin/dispositivos/<machine_id>/vinculos/remover", operation="remove_link")
    def device_unlink_submit(self, page_, machine_id):
        self.operation("remove_link", page_.principal,
                       query={"machine_id": machine_id, "user_id": page_.field("user_id")})
        return page_.redirect(device_path(machine_id), page_.t("devices.link_removed"))

    @page("POST", "/admin/dispositivos/<machine_id>/acesso", operation="adjust_access")
    def device_access_submit(self, page_, machine_id):
        body = {"email": page_.field("email"), "persona": page_.field("persona")}
        if page_.field("name"):  # optional: the person's current name is kept otherwise
            body["name"] = page_.field("name")
        self.operation("adjust_access", page_.principal, machine_id=machine_id, body=body)
        return page_.redirect(device_path(machine_id), page_.t("devices.access_adjusted"))

    @page("POST", "/admin/dispositivos/<machine_id>/resetar", operation="reset_agent")
    def device_reset_submit(self, page_, machine_id):
        done = self.operation("reset_agent", page_.principal, machine_id=machine_id, body={})
        return page_.redirect(device_path(machine_id),
                              page_.t("devices.reset_done", count=done["revoked_tokens"]))


def list_url(filters: dict) -> str:
    values = {key: value for key, value in filters.items() if value}
    return "/admin/dispositivos" + ("?" + urlencode(values) if values else "")


# the company filter ------------------------------------------------------------------------

@dataclass
class CompanyPicker:
    """The company filter: a list of every company of the tenant, narrowed by a search
    (the list_companies operation's own `q`). A search that finds one company filters by
    it; one that finds several asks which; one that finds none lists nothing."""
    options: list = field(default_factory=list)
    chosen: str | None = None
    search: str = ""
    matches: list | None = None  # the companies a search found, when it has to ask
    problem: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the machine list can be asked for (a search that found no company, or
        several and none chosen, lists nothing)."""
        return not self.search or self.chosen is not None

    @classmethod
    def choose(cls, chosen, search, companies, find) -> "CompanyPicker":
        picker = cls(options=list(companies or []), chosen=chosen, search=search or "")
        if not search:
            return picker
        found, picker.problem = attempt(lambda: find(search))
        if found is None:
            picker.search = ""  # accounts did not answer: the list stays unfiltered by company
            return picker
        picker.options = found
        if chosen not in {company["id"] for company in found}:
            picker.chosen = found[0]["id"] if len(found) == 1 else None  # the search wins
        if picker.chosen is None:
            picker.matches = found
        return picker


# a device's page ---------------------------------------------------------------------------

def percent(value) -> str:
    """'41,5%'; '—' when not measured."""
    if value is None:
        return "—"
    return f"{value:.1f}".replace(".", ",").removesuffix(",0") + "%"


def hourly_chart(metrics: dict) -> charts.LineChart:
    since = parse_time(metrics["since"])
    series = {name: {parse_time(item["hour"]): item[column] for item in metrics["items"]}
              for name, column in CHART_SERIES}
    return charts.hourly_line_chart(series, since, metrics["hours"], LOCAL_ZONE)


def alert_view(alert: dict) -> dict:
    """An open alert in words: its kind from the catalogue, what raised it in short."""
    details, kind = alert["details"], alert["kind"]
    if kind == "DISK_ALMOST_FULL":
        summary = ", ".join(f"{disk['mount']} {percent(disk['percent'])}" for disk in details.get("disks", []))
    elif kind == "MEMORY_PRESSURE":
        summary = percent(details.get("memory_percent"))
    elif kind == "USB_POLICY_STALE":
        summary = catalogue.translate("devices.usb_mode." + str(details.get("mode")))
    else:
        summary = plain(details)
    key = "devices.alert." + kind
    return {"kind": kind, "label": catalogue.translate(key) if catalogue.has(key) else kind,
            "summary": summary, "opened_at": alert["opened_at"]}


def plain(value, key: str = "") -> str:
    """An inventory value as text: sizes in bytes read as KB/MB/GB, lists joined, objects
    as `key: value` pairs."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return catalogue.translate("common.yes" if value else "common.no")
    if isinstance(value, int) and key.endswith("_bytes"):
        return size(value)
    if isinstance(value, list):
        return ", ".join(plain(item, key) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{name}: {plain(item, name)}" for name, item in value.items())
    return str(value)


@dataclass
class InventoryTable:
    label: str
    columns: list[str]
    rows: list[list[str]]
    total: int


@dataclass
class InventorySection:
    key: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[InventoryTable] = field(default_factory=list)
    hidden: int = 0  # values left out: the page's budget ran out

    @property
    def short(self) -> bool:
        """Short enough to show open; a long list (installed packages) starts folded."""
        return not self.hidden and all(table.total <= SHORT_TABLE_ROWS for table in self.tables)


class ValueBudget:
    """How many more inventory values, and characters of them, the page may render."""

    def __init__(self, values: int = INVENTORY_VALUES_SHOWN, chars: int = INVENTORY_CHARS_SHOWN):
        self.values, self.chars = values, chars

    @property
    def left(self) -> bool:
        return self.values > 0 and self.chars > 0

    def take(self, texts: list[str]) -> bool:
        """Spend on these texts (one fact, or one table row), if any budget is left."""
        if not self.left:
            return False
        self.values -= len(texts)
        self.chars -= sum(len(text) for text in texts)
        return True


def shown_text(value, key: str = "") -> str:
    text = plain(value, key)
    return text if len(text) <= VALUE_CHARS_SHOWN else text[:VALUE_CHARS_SHOWN - 1] + "…"


def leaves(value) -> int:
    """How many values a part of the inventory holds (what a skipped part hides)."""
    if isinstance(value, dict) and value:
        return sum(leaves(item) for item in value.values())
    if is_table(value):
        return sum(len(item) for item in value)
    return 1

def inventory_sections(document: dict) -> list[InventorySection]:
    """The inventory as the page shows it, whatever the agent put in it: one section per
    top-level object or list (titled from the catalogue when it knows the name), the loose
    values first; nested objects become `a › b` facts, lists of objects become tables."""
    budget = ValueBudget()
    general = InventorySection("", catalogue.translate("devices.inventory_general"))
    sections = []
    for key, value in document.items():
        if (isinstance(value, dict) and value) or is_table(value):
            section = InventorySection(key, section_title(key))
            fill_section(section, value, "", budget)  # a top-level list is the section's one table
            sections.append(section)
        elif budget.left:
            general.facts.append((key, shown_text(value, key)))
            budget.take([general.facts[-1][1]])
        else:
            general.hidden += 1
    return ([general] if general.facts or general.hidden else []) + sections


def section_title(key: str) -> str:
    known = "devices.inventory_part." + key
    return catalogue.translate(known) if catalogue.has(known) else key


def is_table(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def fill_section(section: InventorySection, value, label: str, budget: ValueBudget) -> None:
    if not budget.left:
        section.hidden += leaves(value)
    elif is_table(value):
        found = list(dict.fromkeys(name for item in value for name in item))
        # what names an item (its name, mount, device…) first: the stored order is alphabetical
        columns = ([name for name in IDENTITY_KEYS if name in found] +
                   [name for name in found if name not in IDENTITY_KEYS])[:TABLE_COLUMNS_SHOWN]
        rows = []
        for item in value[:TABLE_ROWS_SHOWN]:
            row = [shown_text(item.get(name), name) for name in columns]
            if not budget.take(row):
                break
            rows.append(row)
        section.hidden += sum(len(item) for item in value) - sum(
            len(item.keys() & set(columns)) for item in value[:len(rows)])
        section.tables.append(InventoryTable(label, columns, rows, len(value)))
    elif isinstance(value, dict) and value:
        for name, item in value.items():
            fill_section(section, item, f"{label} › {name}" if label else name, budget)
    else:
        section.facts.append((label, shown_text(value, label.rsplit(" › ", 1)[-1])))
        budget.take([section.facts[-1][1]])


def readable_changes(version: dict) -> dict:
    """An inventory change record as lines to read: path, old value → new value, added,
    removed; each kind capped (with how many more there are)."""
    changes = version["changes"]
    view = {"changed_at": version["changed_at"], "version": version["version"],
            "initial": version["initial"], "kinds": []}
    for kind in ("changed", "added", "removed"):
        found = changes.get(kind) or {}
        lines = []
        for path, value in list(found.items())[:CHANGES_SHOWN]:
            leaf = path.rsplit("/", 1)[-1]
            if kind == "changed":
                old, new = value if isinstance(value, list) and len(value) == 2 else (None, value)
                lines.append({"path": path, "old": plain(old, leaf), "new": plain(new, leaf)})
            else:
                lines.append({"path": path, "value": plain(value, leaf)})
        if found:
            view["kinds"].append({"kind": kind, "lines": lines, "more": len(found) - len(lines)})
    return view
