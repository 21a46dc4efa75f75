"""DNS rebinding in headless Chromium (tests/it/admin_guard.rs).

Usage: rebind_browser.py ADMIN_PORT. Chromium resolves `rebind.evil.test`
to 127.0.0.1 (`--host-resolver-rules`), as a rebound name does: a page on
that name is then the same origin as the admin listener. The script opens
`/ui` and, from that page's own script, tries what an attacker's page
would: PUT a session, GET it, and log in to the console. Prints a JSON
report of the statuses as its last line.
"""

import json
import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ATTACK = """
const done = arguments[arguments.length - 1];
(async () => {
  const out = {};
  const put = await fetch('/sessions/call-victim', {method: 'PUT',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({call: {metadata: {token: 'attacker-chosen'}}})});
  out.put = put.status;
  out.get = (await fetch('/sessions/call-victim')).status;
  const login = await fetch('/ui/login', {method: 'POST',
    headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'token=x',
    redirect: 'manual'});
  out.login = login.status;
  out.cookie = document.cookie;
  return out;
})().then(done, e => done({error: String(e)}));
"""


def main():
    port = sys.argv[1]
    with tempfile.TemporaryDirectory() as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP rebind.evil.test 127.0.0.1",
        ):
            opts.add_argument(flag)
        service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        d = webdriver.Chrome(options=opts, service=service)
        d.set_page_load_timeout(20)
        d.set_script_timeout(20)
        try:
            d.get(f"http://rebind.evil.test:{port}/ui")
            report = {"page": d.find_element("tag name", "body").text}
            report.update(d.execute_async_script(ATTACK))
        finally:
            d.quit()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
