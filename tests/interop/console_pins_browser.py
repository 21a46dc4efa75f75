"""The console's page of a route's pinned tools in headless Chromium,
driven by Selenium (tests/it/pins.rs).

Usage: console_pins_browser.py ADMIN_URL ROUTE SCREENSHOT_DIR, with the
admin token in CONSOLE_TOKEN. Logs in, follows the route's link on the
overview to its tools page, reads each held tool and its diff, saves
`pins.png`, clicks the first held tool's Approve button and reads the page
it lands on. Prints a JSON report as its last line.
"""

import json
import os
import sys
import tempfile

from selenium.webdriver.common.by import By

from console_browser import browser, wait_for


def held(d):
    return {
        s.get_attribute("data-tool"): s.find_element(By.CSS_SELECTOR, "pre.diff").text
        for s in d.find_elements(By.CSS_SELECTOR, "section.held")
    }


def main():
    admin, route, shots = sys.argv[1], sys.argv[2], sys.argv[3]
    report = {}
    with tempfile.TemporaryDirectory() as profile:
        d = browser(profile)
        d.set_page_load_timeout(20)
        try:
            d.get(f"{admin}/ui")
            d.find_element(By.NAME, "token").send_keys(os.environ["CONSOLE_TOKEN"])
            d.find_element(By.ID, "login").click()
            wait_for(d, By.ID, "routes")
            d.find_element(By.LINK_TEXT, route).click()
            wait_for(d, By.ID, "pinned")
            report["held"] = held(d)
            report["pinned"] = len(d.find_elements(By.CSS_SELECTOR, "#pinned tbody tr"))
            d.save_screenshot(os.path.join(shots, "pins.png"))
            first = d.find_element(By.CSS_SELECTOR, "section.held")
            report["approved"] = first.get_attribute("data-tool")
            first.find_element(By.CSS_SELECTOR, "button.approve").click()
            wait_for(d, By.ID, "pinned", leaving=first)
            report["held_after"] = sorted(held(d))
            report["url_after"] = d.current_url
            d.save_screenshot(os.path.join(shots, "pins-approved.png"))
        except Exception:
            d.save_screenshot(os.path.join(shots, "pins-failure.png"))
            print(d.current_url, d.find_element(By.TAG_NAME, "main").text, file=sys.stderr)
            raise
        finally:
            d.quit()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
