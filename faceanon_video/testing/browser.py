"""Headless Chromium driven by Selenium, for the review page's browser tests and its benchmark.

Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install chromium chromium-driver``);
``missing()`` says why a browser test cannot run here (the tests skip with that reason).
"""

from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("FACEANON_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACEANON_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'faceanon-video[review]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) and shutil.which(path) is None:
            return f"{path} not found (apt-get install {package})"
    return None


def chromium(width: int = 1600, height: int = 1000):
    """A headless Chromium ``webdriver`` with a fixed window size (close it with ``quit()``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                     "--disable-extensions", "--no-first-run", "--disable-background-networking", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
