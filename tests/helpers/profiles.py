"""Hypothesis example budgets: `dev` (the default on a workstation) runs a fifth of each property's examples, `ci`
(chosen when the `CI` environment variable is set, as on CI, or with HYPOTHESIS_PROFILE=ci) runs them all.

A property declares its full budget once, `@settings(max_examples=examples(250), ...)`, and the profile scales it.
"""

import os

from hypothesis import settings

DEV_FRACTION = 0.2
MIN_EXAMPLES = 10


def profile_name() -> str:
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")


def examples(full: int) -> int:
    """The number of examples a property with a `full` budget runs under the active profile."""
    if profile_name() == "ci":
        return full
    return max(MIN_EXAMPLES, round(full * DEV_FRACTION))


def register_hypothesis_profiles() -> None:
    settings.register_profile("ci", deadline=None, print_blob=True)
    settings.register_profile("dev", deadline=None)
    settings.load_profile(profile_name())
