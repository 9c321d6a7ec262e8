"""Browser tests: the wallboard page in headless Debian Chromium, driven by Playwright."""
