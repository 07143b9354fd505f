"""Under CI (``CI`` set) the tests run inside the brand-new virtualenv that ``.ci/run`` makes, never in the
machine's own Python: a package that README's install command misses must fail CI, not be found by chance."""

from __future__ import annotations

import os
import site
import sys

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="checks .ci/run's virtualenv; CI sets CI")


def test_ci_runs_in_a_virtualenv():
    assert sys.prefix != sys.base_prefix, f"not a virtualenv: sys.prefix is the base Python {sys.base_prefix}"


def test_no_site_packages_of_the_base_python_leak_in():
    base_site = [p for p in sys.path if p.startswith(sys.base_prefix) and "site-packages" in p]
    assert not base_site, f"the base Python's site-packages are on sys.path: {base_site}"
    assert not site.ENABLE_USER_SITE, "the user site-packages folder is enabled"
