"""The chat page in a real headless Chromium (Debian's chromium and chromium-driver), driven by
Selenium, against the chittyd that tests/browser/chromium.rs runs in-process.

Usage: chat_page.py ADDR ARTIFACTS_DIR

The Rust test plays the gRPC participants and restarts the server; this script is the person at
the browser. They keep in step by lines: this script prints what it saw on standard output
("joined 7"), and reads on standard input what the Rust side wants it to look for next
("expect 12"). Everything is done with the keyboard, as a person without a mouse would.
Any failure raises, and the exit status says so.
"""

import json
import sys
import tempfile

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    sys.exit("selenium is missing from the venv: run `bash tests/run` (it installs "
             "tests/interop/requirements.txt)")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PATIENCE = 10


def say(*words):
    print(*words, flush=True)


def hear(prefix):
    line = sys.stdin.readline().strip()
    if not line.startswith(prefix):
        raise AssertionError(f"expected {prefix!r} from the test, got {line!r}")
    return line[len(prefix):].strip()


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root, Chromium needs --no-sandbox. The background-networking flags keep it from
    # reaching for Google's hosts, which a closed network refuses (noise in the log).
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1024,768",
                 f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Page:
    def __init__(self, driver):
        self.d = driver
        self.wait = WebDriverWait(driver, PATIENCE)

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def until(self, what, check):
        return self.wait.until(lambda _: check(), message=what)

    def text(self, css):
        return self.el(css).text

    def lines(self, kind):
        return [(li.get_attribute("data-lamport"), li.text)
                for li in self.d.find_elements(By.CSS_SELECTOR, f"#log li[data-kind='{kind}']")]

    def line(self, kind, contains):
        """Waits for a log line of `kind` containing `contains`; its (lamport, text)."""
        def found():
            return next((l for l in self.lines(kind) if contains in l[1]), None)
        return self.until(f"a {kind} line with {contains!r}; log: {self.log_text()}", found)

    def log_text(self):
        return [li.text for li in self.d.find_elements(By.CSS_SELECTOR, "#log li")]

    def severe(self):
        return [e for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


def join(page, name):
    field = page.el("#name")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(name, Keys.ENTER)


def main():
    addr, artifacts = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            run(Page(driver), addr, artifacts)
        finally:
            driver.quit()


def run(page, addr, artifacts):
    page.d.get(f"http://{addr}/")
    page.until("the name form", lambda: page.el("#join").is_displayed())
    assert page.d.title == "Chitty-Chat", page.d.title

    # A taken name: the server's refusal, in place, and the form still there.
    join(page, "rusty")
    error = page.until("the taken name's error", lambda: page.text("#join-error"))
    assert page.el("#join").is_displayed() and not page.el("#chat").is_displayed()
    say("refused", error)

    # Joined: our own join notice, with its Lamport time beside it and in its text.
    join(page, "alice")
    lamport, text = page.line("join", "Participant alice joined")
    assert f"[L{lamport}]" in text and f"Lamport time {lamport}" in text, text
    assert "connected" == page.el("#status").get_attribute("data-state")
    say("joined", lamport)

    # The roster lists everyone online, us set apart.
    def roster():
        items = [li.text for li in page.d.find_elements(By.CSS_SELECTOR, "#roster li")]
        names = " | ".join(items)
        return names if all(n in names for n in ["alice", "rusty", "carol"]) else None
    say("roster", page.until("the roster", roster))

    page.el("#text").send_keys("hello from the browser", Keys.ENTER)
    lamport = hear("expect")
    _, text = page.line("message", "rusty: hello from grpc")
    assert page.lines("message")[-1][0] == lamport, (page.lines("message"), lamport)
    say("seen", lamport)

    # A direct message: rusty chosen from the list with the keyboard.
    rusty = page.until("rusty's button", lambda: next(
        (b for b in page.d.find_elements(By.CSS_SELECTOR, "#roster button.person")
         if b.text.startswith("rusty")), None))
    rusty.send_keys(Keys.ENTER)
    assert page.d.switch_to.active_element == page.el("#text")
    page.el("#text").send_keys("psst", Keys.ENTER)
    lamport, text = page.line("direct", ": psst")
    assert "→ rusty #" in text, text
    say("direct", lamport)
    hear("answered")
    _, text = page.line("direct", ": back at you")
    assert "rusty #" in text and "→ you" in text, text
    say("answer seen")

    # The counter and the limit the welcome announced: 129 characters cannot be sent, 128 can.
    field = page.el("#text")
    field.send_keys(Keys.ESCAPE)
    assert page.el("#to").get_attribute("value") == "0"
    field.send_keys("é" * 129)
    page.until("129/128", lambda: page.text("#counter") == "129/128")
    assert page.el("#counter").get_attribute("data-over") == "true"
    assert not page.el("#send-button").is_enabled()
    assert "at most 128" in page.text("#send-error")
    field.send_keys(Keys.ENTER)
    field.send_keys(Keys.BACKSPACE)
    page.until("128/128", lambda: page.text("#counter") == "128/128")
    assert page.el("#send-button").is_enabled()
    field.send_keys(Keys.ENTER)
    page.until("the counter back to 0", lambda: page.text("#counter") == "0/128")
    assert not page.lines("error"), page.lines("error")
    say("long sent")

    severe = page.severe()
    assert not severe, f"console errors: {json.dumps(severe)}"
    say("console clean")

    # The server restarts: the page says it lost the connection, and comes back by itself.
    page.until("reconnecting",
               lambda: page.el("#status").get_attribute("data-state") == "reconnecting")
    say("reconnecting", page.text("#status"))
    page.until("connected again",
               lambda: page.el("#status").get_attribute("data-state") == "connected")
    page.line("local", "Connection lost: the server shut down")
    page.line("local", "Reconnected as alice")
    # Scroll-back keeps everything since the page opened, across the restart.
    page.line("message", "hello from the browser")
    say("reconnected", page.text("#status"))
    hear("go")
    page.el("#text").send_keys("back again", Keys.ENTER)
    page.line("message", "alice: back again")
    # The new server's roster: rusty joined it after the restart, and the list follows.
    page.until("rusty in the roster after the restart", lambda: any(
        li.text.startswith("rusty")
        for li in page.d.find_elements(By.CSS_SELECTOR, "#roster li")))

    # What a failed reconnection attempt logs (connection refused) is the browser's own
    # report; anything else, a CSP violation above all, is a fault of the page.
    severe = [e for e in page.severe()
              if not ("WebSocket connection to" in e["message"]
                      and "ERR_CONNECTION_REFUSED" in e["message"])]
    assert not severe, f"console errors: {json.dumps(severe)}"

    page.d.save_screenshot(f"{artifacts}/chat.png")
    # At phone width nothing is wider than the screen.
    page.d.set_window_size(390, 844)
    wide = page.d.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"{wide}px wider than the phone's screen"
    page.d.save_screenshot(f"{artifacts}/chat-phone.png")
    say("done")


if __name__ == "__main__":
    main()
