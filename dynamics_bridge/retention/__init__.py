"""Retention analytics: churn risk, retention curves and lifetime value, winback themes.

Pure (numpy and scikit-learn, the ``retention`` extra; no I/O library). The pieces work on
:class:`~dynamics_bridge.retention.records.MemberHistory` records as a Dataverse reader produces
them, so the jobs that read, write and push stay outside:

- :mod:`.features`: what was known about each member on a cut-off date, as a numpy matrix;
- :mod:`.model`: the churn model (time split, calibrated, against a baseline), scoring with reasons;
- :mod:`.survival`: Kaplan-Meier curves by cohort, expected remaining months, lifetime value;
- :mod:`.themes`: winback themes by cluster analysis of recent leavers, stable between runs;
- :mod:`.synthetic`: a register with known structure, for honest evaluation.

The extra is checked here, so a command that needs it says what to install instead of failing
on a bare ``ModuleNotFoundError`` deep inside.
"""

from __future__ import annotations

from importlib.util import find_spec

from dynamics_bridge.errors import ConfigError

_MISSING = [name for name in ("numpy", "sklearn", "scipy") if find_spec(name) is None]
if _MISSING:
    raise ConfigError(
        "the retention analytics need the `retention` extra "
        f"(pip install 'dynamics-bridge[retention]'); not installed: {', '.join(_MISSING)}"
    )
