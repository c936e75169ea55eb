"""Skip a Vulkan test where no Vulkan device exists — except where CI has installed one.

.ci/run sets SOFTRAS_REQUIRE_VULKAN=1 after installing Mesa's lavapipe: there, a
Vulkan backend that fails to start is a failure, not a silent skip (a TI_ARCH=x64
override once turned every Vulkan test into a skip without anyone noticing).
"""
import os

import pytest


def no_vulkan(reason):
    print(reason)
    if os.environ.get("SOFTRAS_REQUIRE_VULKAN") == "1":
        pytest.fail(f"{reason} (SOFTRAS_REQUIRE_VULKAN=1: Vulkan must work here)")
    pytest.skip(reason)
