"""The console in headless Chromium, driven by Selenium (tests/it/console.rs).

Usage: console_browser.py ADMIN_URL CALL_ID SCREENSHOT_DIR, with the admin
token in CONSOLE_TOKEN and every secret that must not be on a page in
CONSOLE_SECRETS (comma-separated). Logs in through the form, reads the
overview's routes, looks the call up through the overview's `call` field,
renders in the playground, and saves a screenshot of each page. Prints a
JSON report as its last line; exits non-zero if a page holds a secret.
"""

import json
import os
import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def wait_for(d, by, what, leaving=None):
    """The element, once the page that has it has loaded (a click's
    navigation is not waited for by Selenium). `leaving`: an element of
    the page the click leaves, when the next page has an element like the
    one waited for (a form that posts back to its own page): it must go
    stale first, or the old page's element is found before the navigation
    and the page goes from under whoever reads it next."""
    wait = WebDriverWait(d, 15)
    if leaving is not None:
        wait.until(EC.staleness_of(leaving))
    return wait.until(EC.presence_of_element_located((by, what)))


def browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1280,900", f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def main():
    admin, call_id, shots = sys.argv[1], sys.argv[2], sys.argv[3]
    token = os.environ["CONSOLE_TOKEN"]
    secrets = [s for s in os.environ.get("CONSOLE_SECRETS", "").split(",") if s]
    report = {}
    sources = []
    with tempfile.TemporaryDirectory() as profile:
        d = browser(profile)
        d.set_page_load_timeout(20)
        try:
            d.get(f"{admin}/ui")
            d.find_element(By.NAME, "token").send_keys(token)
            d.find_element(By.ID, "login").click()
            wait_for(d, By.ID, "routes")
            rows = d.find_elements(By.CSS_SELECTOR, "#routes tbody tr")
            report["routes"] = sorted(r.get_attribute("data-route") for r in rows)
            report["document_cookie"] = d.execute_script("return document.cookie")
            cookie = d.get_cookie("headgate_console") or {}
            report["cookie"] = {k: cookie.get(k) for k in ("httpOnly", "sameSite", "path")}
            sources.append(d.page_source)
            d.save_screenshot(os.path.join(shots, "overview.png"))

            field = d.find_element(By.NAME, "call")
            field.send_keys(call_id)
            field.submit()
            wait_for(d, By.ID, "call-id")
            assert d.current_url.endswith(f"/ui/calls/{call_id}"), d.current_url
            report["variables"] = d.find_element(By.ID, "variables").text.split("\n")
            report["call_rows"] = len(d.find_elements(By.CSS_SELECTOR, "#requests tbody tr"))
            report["call_text"] = d.find_element(By.ID, "requests").text
            sources.append(d.page_source)
            d.save_screenshot(os.path.join(shots, "call.png"))

            d.get(f"{admin}/ui/playground")
            d.find_element(By.NAME, "template").send_keys("Bearer << call.metadata.token >>")
            vars_box = d.find_element(By.NAME, "vars")
            vars_box.clear()
            vars_box.send_keys('{"call": {"metadata": {"token": "typed-in-playground"}}}')
            d.find_element(By.ID, "render").click()
            report["rendered"] = wait_for(d, By.ID, "rendered").text
            sources.append(d.page_source)
            d.save_screenshot(os.path.join(shots, "playground.png"))
        except Exception:
            d.save_screenshot(os.path.join(shots, "failure.png"))
            print(d.current_url, d.find_element(By.TAG_NAME, "main").text, file=sys.stderr)
            raise
        finally:
            d.quit()
    leaked = [s for s in secrets for src in sources if s in src]
    report["leaked"] = len(leaked)
    print(json.dumps(report))
    if leaked:
        sys.exit("a console page holds a secret")


if __name__ == "__main__":
    main()
