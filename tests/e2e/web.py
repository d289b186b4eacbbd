#!/usr/bin/env python3
"""End-to-end test of the web page of `oncall serve`, in headless Chromium (Selenium).

    web.py BASE_URL TOKEN SCREENSHOT_PATH [EXPECTED_PID [SECOND_APPROVER_TOKEN]]

Run by tests/web_e2e.rs against a real server while a real CPU hog runs on this host. The page is
opened at a phone's size first, then at a desktop's; the script signs in, files an incident, watches
the investigation stream in (hypothesis cards, a confirmed one), approves the agent's
`host.signal_process` request, waits for the measured effect (`action_verified`), and opens the
post-mortem draft. It saves a screenshot at the end, and on failure too (next to it, the phone
screenshot as *-phone.png), and exits non-zero with a message naming the step that failed.

Selenium is pointed at Debian's /usr/bin/chromedriver and /usr/bin/chromium explicitly, so it never
starts Selenium Manager and never downloads anything (scripts/setup-test-deps.sh installs both).
"""

import os
import sys
import time
import traceback

os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager must not fetch

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (412, 915)
DESKTOP = (1440, 1000)
REPORT = (
    "checkout is slow for users: p99 latency of /api/checkout is above 2s "
    "and CPU on the app host looks pegged"
)


class StepFailed(Exception):
    pass


def tid(name, extra=""):
    return f'[data-testid="{name}"]{extra}'


class Page:
    def __init__(self, driver, base):
        self.d = driver
        self.base = base.rstrip("/")
        self.step = "start"

    # ---------- helpers ----------
    def find(self, name, extra=""):
        return self.d.find_elements(By.CSS_SELECTOR, tid(name, extra))

    def one(self, name, extra=""):
        return self.d.find_element(By.CSS_SELECTOR, tid(name, extra))

    def wait(self, what, cond, timeout):
        """Waits until cond(driver) is truthy; fails naming `what` (and the page's error banner)."""
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(lambda d: cond(d))
        except TimeoutException:
            raise StepFailed(f"timed out after {timeout} s waiting for {what}{self.banner()}")

    def banner(self):
        try:
            e = self.one("error")
            if e.is_displayed() and e.text.strip():
                return f" (the page shows the error: {e.text.strip()!r})"
        except WebDriverException:
            pass
        return ""

    def no_error_banner(self):
        b = self.banner()
        if b:
            raise StepFailed("unexpected error banner" + b)

    def no_horizontal_scroll(self, where):
        w = self.d.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth];"
        )
        if w[0] > w[1] + 1:
            raise StepFailed(
                f"{where}: the page scrolls sideways (content {w[0]} px wide in a {w[1]} px window)"
            )

    def kinds(self):
        return [e.get_attribute("data-kind") for e in self.find("log-line")]

    def has_kind(self, kind):
        return bool(self.find("log-line", f'[data-kind="{kind}"]'))

    def debug_log_text(self):
        try:
            return self.one("debug-log").text
        except WebDriverException:
            return "(no debug log)"

    # ---------- the scenario ----------
    def run(self, token, shot, expected_pid, second=None):
        d = self.d
        t0 = time.monotonic()

        self.step = "open the page at a phone's size"
        d.set_window_size(*PHONE)
        d.get(self.base + "/")
        self.wait("the sign-in form", lambda _: self.one("token-input").is_displayed(), 20)
        if d.title != "oncall":
            raise StepFailed(f"page title is {d.title!r}, expected 'oncall'")
        self.no_horizontal_scroll("sign-in form at phone size")

        self.step = "sign in (phone size)"
        self.one("token-input").send_keys(token)
        self.one("sign-in").click()
        self.wait(
            "'signed-in-as' to name the user and role",
            lambda _: "(approver)" in self.one("signed-in-as").text,
            20,
        )
        who = self.one("signed-in-as").text
        if "admin" not in who:
            raise StepFailed(f"signed-in-as shows {who!r}, expected the operator `admin`")
        self.wait("the new-incident form", lambda _: self.one("report-input").is_displayed(), 10)
        self.no_horizontal_scroll("signed-in page at phone size")
        self.no_error_banner()
        root, ext = os.path.splitext(shot)
        d.save_screenshot(f"{root}-phone{ext or '.png'}")

        self.step = "switch to a desktop's size"
        d.set_window_size(*DESKTOP)
        self.wait("the desktop layout", lambda _: d.execute_script("return window.innerWidth") >= 1000, 10)
        self.no_horizontal_scroll("signed-in page at desktop size")

        self.step = "start an incident"
        self.one("report-input").send_keys(REPORT)
        self.one("start-incident").click()
        self.wait(
            "the new incident to open (incident-title)",
            lambda _: self.one("incident-title").is_displayed() and self.one("incident-title").text.strip(),
            20,
        )
        self.wait(
            "the new incident on the incident list",
            lambda _: len(self.find("incident-item")) >= 1,
            20,
        )
        self.wait("the report line in the debug log", lambda _: self.has_kind("report"), 20)
        self.wait(
            "the live event stream to connect",
            lambda _: d.find_element(By.ID, "live").text.strip() == "\u25cf live",
            20,
        )
        print(f"[{time.monotonic() - t0:5.1f}s] incident {d.find_element(By.ID, 'incident-id').text} open", flush=True)

        self.step = "watch the investigation stream in"
        self.wait("hypothesis cards", lambda _: len(self.find("hypothesis")) >= 1, 60)
        self.wait(
            "a hypothesis card with data-status=confirmed",
            lambda _: self.find("hypothesis", '[data-status="confirmed"]'),
            60,
        )
        card = self.find("hypothesis", '[data-status="confirmed"]')[0]
        print(f"[{time.monotonic() - t0:5.1f}s] confirmed: {' '.join(card.text.split())}", flush=True)
        for k in ("investigation_started", "tool_called", "tool_answered", "hypothesis_changed"):
            self.wait(f"a log-line of kind {k}", lambda _, k=k: self.has_kind(k), 30)
        # What the round cost, on the board: its tokens and time.
        self.wait(
            "the round's cost on the board",
            lambda _: any("completion tokens" in e.text and "in all" in e.text for e in self.find("round-cost")),
            60,
        )

        self.step = "wait for the agent's host.signal_process request"
        sel = '[data-tool="host.signal_process"]'
        self.wait("an approval with data-tool=host.signal_process", lambda _: self.find("approval", sel), 60)
        appr = self.find("approval", sel)[0]
        if expected_pid and f'"pid": {expected_pid}' not in appr.text:
            raise StepFailed(f"the approval is not for the hog (pid {expected_pid}): {appr.text!r}")
        self.wait("the action_requested line", lambda _: self.has_kind("action_requested"), 10)
        self.no_error_banner()
        print(f"[{time.monotonic() - t0:5.1f}s] approval {appr.get_attribute('data-id')} pending", flush=True)

        if second:
            # Two-person control: admin drove this investigation, so admin cannot approve the
            # kill its model asked for. The page says so; a second approver then signs in.
            self.step = "approve as the person the request was filed for (refused)"
            if "on behalf of admin" not in appr.text:
                raise StepFailed(f"the approval does not say who asked: {appr.text!r}")
            btn = appr.find_element(By.CSS_SELECTOR, tid("approve"))
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", btn)
            btn.click()
            self.wait(
                "the two-person refusal",
                lambda _: "two-person" in self.one("approval-result").text + self.banner(),
                30,
            )
            print(f"[{time.monotonic() - t0:5.1f}s] admin's own approval refused (two-person)", flush=True)

            self.step = "sign in as a second approver"
            self.one("sign-out").click()
            self.wait("the sign-in form", lambda _: self.one("token-input").is_displayed(), 20)
            self.one("token-input").clear()
            self.one("token-input").send_keys(second)
            self.one("sign-in").click()
            self.wait(
                "'signed-in-as' to name the second approver",
                lambda _: "bo" in self.one("signed-in-as").text,
                20,
            )
            self.wait("the incident on the list", lambda _: len(self.find("incident-item")) >= 1, 20)
            self.find("incident-item")[0].click()
            self.wait("the approval, for bo", lambda _: self.find("approval", sel), 30)
            appr = self.find("approval", sel)[0]

        self.step = "approve host.signal_process"
        # The list is redrawn when events arrive: find the button afresh until a click lands.
        for attempt in range(10):
            try:
                appr = self.find("approval", sel)[0]
                btn = appr.find_element(By.CSS_SELECTOR, tid("approve"))
                d.execute_script("arguments[0].scrollIntoView({block: 'center'});", btn)
                btn.click()
                break
            except (StaleElementReferenceException, IndexError):
                if attempt == 9:
                    raise
                time.sleep(0.3)
        self.wait(
            "the approval result",
            lambda _: "approved" in self.one("approval-result").text or "FAILED" in self.one("approval-result").text
            or self.banner(),
            30,
        )
        result = self.one("approval-result").text
        if "FAILED" in result or "approved" not in result:
            raise StepFailed(f"approving did not succeed: {result!r}{self.banner()}")
        self.wait("the action_approved line", lambda _: self.has_kind("action_approved"), 20)

        self.step = "wait for the action to run and its effect to be measured"
        # The page never re-reads the incident after opening it: these lines can only have come
        # through the live event stream (SSE over fetch).
        self.wait("a log-line of kind action_executed", lambda _: self.has_kind("action_executed"), 60)
        executed = self.find("log-line", '[data-kind="action_executed"]')[0].text
        if "FAILED" in executed:
            raise StepFailed(f"the action failed: {executed!r}")
        self.wait("a log-line of kind action_verified (the measured effect)", lambda _: self.has_kind("action_verified"), 60)
        verified = self.find("log-line", '[data-kind="action_verified"]')[0].text
        print(f"[{time.monotonic() - t0:5.1f}s] {verified}", flush=True)
        self.wait(
            "the approval to leave the pending list",
            lambda _: not self.find("approval", sel),
            20,
        )

        self.step = "open the post-mortem draft"
        self.one("postmortem-button").click()
        self.wait(
            "the post-mortem draft",
            lambda _: self.one("postmortem").is_displayed() and "Post-mortem draft" in self.one("postmortem").text,
            30,
        )
        pm = self.one("postmortem").text
        for needle in ("Post-mortem draft", "Timeline"):
            if needle not in pm:
                raise StepFailed(f"the post-mortem lacks {needle!r}:\n{pm[:2000]}")
        self.no_error_banner()
        self.no_horizontal_scroll("incident page at desktop size")

        self.step = "resolve, then close the incident"
        self.wait("the resolve button", lambda _: self.one("resolve").is_displayed(), 30)
        self.one("resolve").click()
        self.wait("status resolved", lambda _: self.one("incident-status").text.lower() == "resolved", 20)
        self.wait("the close button", lambda _: self.one("close-incident").is_displayed(), 10)
        self.one("close-incident").click()
        self.wait("status closed", lambda _: self.one("incident-status").text.lower() == "closed", 20)
        self.no_error_banner()

        self.step = "save the screenshot"
        save_screenshot(d, shot)
        print(f"[{time.monotonic() - t0:5.1f}s] screenshot {shot}", flush=True)


def save_screenshot(d, path):
    """The whole page (beyond the viewport) when Chromium can; the viewport otherwise."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        import base64

        m = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m.get("cssContentSize") or m["contentSize"]
        w, h = int(size["width"]), min(int(size["height"]), 8000)
        shot = d.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}},
        )
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    except Exception:  # noqa: BLE001 - any failure here falls back to the plain screenshot
        d.save_screenshot(path)


def main():
    if len(sys.argv) not in (4, 5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    base, token, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    expected_pid = sys.argv[4] if len(sys.argv) >= 5 else None
    second = sys.argv[5] if len(sys.argv) == 6 else None
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.access(p, os.X_OK):
            print(f"web e2e FAILED: {p} is missing; run scripts/setup-test-deps.sh", file=sys.stderr)
            return 1

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--password-store=basic", f"--window-size={PHONE[0]},{PHONE[1]}",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except WebDriverException as e:
        print(f"web e2e FAILED: could not start headless Chromium: {e.msg or e}", file=sys.stderr)
        return 1
    driver.set_page_load_timeout(30)
    page = Page(driver, base)
    try:
        page.run(token, shot, expected_pid, second)
        print("web e2e passed", flush=True)
        return 0
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        msg = str(e) if isinstance(e, StepFailed) else "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"web e2e FAILED at step '{page.step}': {msg}", file=sys.stderr)
        try:
            print("log-line kinds seen: " + ", ".join(page.kinds()), file=sys.stderr)
            print("debug log:\n" + page.debug_log_text()[-6000:], file=sys.stderr)
            for entry in driver.get_log("browser")[-30:]:
                print(f"console {entry.get('level')}: {entry.get('message')}", file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass
        try:
            save_screenshot(driver, shot)
            print(f"screenshot of the failure: {shot}", file=sys.stderr)
        except Exception as s:  # noqa: BLE001
            print(f"(no screenshot: {s})", file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
