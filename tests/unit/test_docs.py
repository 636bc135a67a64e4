"""What a reader needs is in the repository: the README's and docs' links resolve inside it,
docs/API.md lists exactly the gateway's routes, every "pitfall N" the code cites is in
docs/ENGINEERING.md, and every test docs/ARCHITECTURE.md's guarantee table cites exists."""
import re

import services.gateway.service  # noqa: F401  (registers the routes)
from common.config import ROOT
from services.gateway.http import ROUTES

DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "deploy" / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_stay_inside_the_repository_and_resolve():
    for page in MARKDOWN:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text, f"{page.name} points outside the repository"
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor
            resolved = (page.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(ROOT), f"{page.name}: {target} is outside the repository"
            assert resolved.exists(), f"{page.name}: {target} does not exist"


def test_the_documents_the_code_cites_exist():
    for name in ("PRODUCT.md", "API.md", "ENGINEERING.md", "ARCHITECTURE.md"):
        assert (DOCS / name).exists(), name


def test_api_md_lists_every_route_of_the_gateway_and_no_other():
    text = (DOCS / "API.md").read_text(encoding="utf-8")
    index = text.split("## Route index", 1)[1].split("```")[1]
    documented = {line.strip() for line in index.splitlines() if line.strip()}
    served = {route.method + " " + re.sub(r"<(\w+)>", r"{\1}", route.path) for route in ROUTES}
    assert served - documented == set(), "routes missing from docs/API.md's route index"
    assert documented - served == set(), "docs/API.md lists routes the gateway does not serve"


def test_every_pitfall_the_code_cites_is_in_engineering_md():
    notes = (DOCS / "ENGINEERING.md").read_text(encoding="utf-8")
    numbered = {int(n) for n in re.findall(r"^(\d+)\. ", notes, flags=re.MULTILINE)}
    assert numbered == set(range(1, max(numbered) + 1)), "pitfalls are numbered 1..N"
    cited = set()
    for folder in ("common", "services", "chamados", "agent", "bench", "scripts", "tests", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".sh") and path.is_file():
                for first, _, last in re.findall(r"pitfalls? (\d+)(-(\d+))?",
                                                 path.read_text(encoding="utf-8", errors="replace")):
                    cited.update(range(int(first), int(last or first) + 1))
    assert cited and cited <= numbered, f"cited but not in docs/ENGINEERING.md: {cited - numbered}"


def guarantee_rows() -> list[tuple[str, str]]:
    """docs/ARCHITECTURE.md's guarantee table: (guarantee, tests column) per row."""
    text = (DOCS / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Guarantees and where they are kept", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # past head and rule
    return [(cells[0], cells[-1]) for cells in (row.strip("| ").split(" | ") for row in rows)]


def test_every_guarantee_cites_its_tests_or_says_it_has_none():
    rows = guarantee_rows()
    assert len(rows) >= 15, "the guarantee table was not found whole"
    for guarantee, tests in rows:
        assert re.search(r"`tests/\S+\.py::test_\w+`", tests) or "no test yet" in tests, \
            f"{guarantee!r}: cite `tests/<file>.py::<test>` or say 'no test yet'"


def test_every_test_the_guarantee_table_cites_exists():
    cited = [(guarantee, citation) for guarantee, tests in guarantee_rows()
             for citation in re.findall(r"`(tests/[^`]+)`", tests)]
    assert cited
    for guarantee, citation in cited:
        path, _, function = citation.partition("::")
        assert function, f"{guarantee!r}: {citation} names no test function"
        source = ROOT / path
        assert source.is_file(), f"{guarantee!r}: {path} does not exist"
        assert re.search(rf"^def {re.escape(function)}\(", source.read_text(encoding="utf-8"),
                         flags=re.MULTILINE), f"{guarantee!r}: {path} has no {function}"
