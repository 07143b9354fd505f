"""Every bundle's docs/README.md follows the MONAI model zoo's README template (its headings, in its order)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

BUNDLES_DIR = REPO_ROOT / "bundles"
ALL_BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())
# the template's sections (docs/readme_template.md of the model zoo), in order; "Performance" may say more after it
TEMPLATE = [
    "### Authors",
    "### Tags",
    "## Model Description",
    "## Data",
    "#### Preprocessing",
    "## Performance",
    "## Additional Usage Steps",
    "## System Configuration",
    "## Limitations",
    "## Citation Info",
    "## References",
]


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_readme_has_the_model_zoo_template_sections_in_order(name):
    readme = (BUNDLES_DIR / name / "docs" / "README.md").read_text()
    headings = re.findall(r"^(#{2,4} [^\n]+)$", readme, flags=re.MULTILINE)
    positions = []
    for section in TEMPLATE:
        found = [i for i, heading in enumerate(headings) if heading == section or heading.startswith(section + " ")]
        found = found or [i for i, heading in enumerate(headings) if heading.startswith(section + ":")]
        assert found, f"{name}: docs/README.md lacks '{section}'"
        positions.append(found[0])
    # the template's order for the top-level facts; usage steps and limitations may sit anywhere after Data
    assert positions[:5] == sorted(positions[:5]), f"{name}: {list(zip(TEMPLATE, positions))}"
    assert positions[-2] < positions[-1], f"{name}: Citation Info comes before References"


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_readme_says_research_use_only_and_cites_the_paper(name):
    readme = (BUNDLES_DIR / name / "docs" / "README.md").read_text()
    limitations = readme.split("## Limitations", 1)[1].split("\n## ", 1)[0]
    assert "not for clinical" in limitations.lower() or "not a clinical" in limitations.lower()
    assert "arXiv:2402.03526" in readme.split("## Citation Info", 1)[1]
