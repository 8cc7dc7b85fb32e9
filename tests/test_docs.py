"""The README a newcomer starts from: its first commands are the main job and the whole test suite,
and every relative link in the project's Markdown (README.md, docs/, deploy/, tests/) leads to a file
of the repository (and to a heading there, when it names one)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split()]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_first_commands_are_make_run_and_make_test_and_both_exist() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = FENCE.search(readme)
    assert first_block is not None and readme.index("## ") < first_block.start()
    assert readme[:first_block.start()].count("\n## ") == 1, "the two commands are the README's first section"
    commands = [line.split("#")[0].strip() for line in first_block.group().splitlines()[1:-1]]
    assert commands == ["make run", "make test"]
    for target, script in (("run", "deploy/local/run.sh"), ("test", "deploy/local/test.sh")):
        dry = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0 and dry.stdout.strip() == script, dry.stdout + dry.stderr
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_of_the_repository(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, heading = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_relative_to(REPO) or not linked.exists():
            broken.append(target)
        elif heading and linked.suffix == ".md":
            headings = {anchor(h) for h in re.findall(r"^#+\s+(.*)$", FENCE.sub("", linked.read_text()), re.M)}
            if heading not in headings:
                broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links that lead nowhere: {broken}"
