"""A small WebDriver BiDi client for Debian's Firefox, for the browser tests.

Playwright drives only its own patched Firefox builds; Firefox itself speaks
WebDriver BiDi. `firefox_page()` starts a headless Firefox on a fresh
profile and yields a Page with the part of Playwright's sync Page that the
tests use, in the same shape, so that one script drives either browser.
Every wait has a deadline; Firefox is killed and its profile removed however
the script ends.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from websockets.sync.client import connect

# WebDriver's raw key values of the keys named as in Playwright; any other
# key is its one character.
KEYS = {
    "ArrowLeft": "\ue012",
    "ArrowUp": "\ue013",
    "ArrowRight": "\ue014",
    "ArrowDown": "\ue015",
}

# Playwright's default, in milliseconds.
DEFAULT_TIMEOUT = 30000

# Margin over an in-page deadline for the answer to reach us, in seconds.
ANSWER_MARGIN = 10

# `expression` as Playwright takes it: a function, called with the
# argument, or an expression, whose value counts.
CALL = """(arg) => {{
  const value = ({expression});
  return typeof value === 'function' ? value(arg) : value;
}}"""

# Polls `call` until it is truthy. As in Playwright, a promise counts as
# truthy: it is not awaited.
WAIT = """async (arg, timeout) => {{
  const check = {call};
  const deadline = performance.now() + timeout;
  for (;;) {{
    if (check(arg)) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${{timeout}} ms`);
    await new Promise(resolve => setTimeout(resolve, 20));
  }}
}}"""

# Calls `declaration` with the element of a selector and further arguments.
ON_ELEMENT = """(selector, ...args) => {{
  const element = document.querySelector(selector);
  if (!element) throw new Error(`no element matches ${{selector}}`);
  return ({declaration})(element, ...args);
}}"""

# As Playwright fills the inputs that take no typing (dates, times): the
# value at once, then input and change.
FILL = """(element, value) => {
  element.focus();
  element.value = value;
  if (element.value === '') throw new Error(`the input refused ${value}`);
  element.dispatchEvent(new Event('input', {bubbles: true, composed: true}));
  element.dispatchEvent(new Event('change', {bubbles: true}));
}"""

SELECT = """(element, value) => {
  const option = [...element.options].find(o => o.value === value || o.label === value);
  if (!option) throw new Error(`no option ${value}`);
  element.value = option.value;
  element.dispatchEvent(new Event('input', {bubbles: true, composed: true}));
  element.dispatchEvent(new Event('change', {bubbles: true}));
}"""

DISPATCH = """(element, kind) => {
  element.dispatchEvent(new Event(kind, {bubbles: true, cancelable: true, composed: true}));
}"""

BOUNDING_BOX = """element => {
  const box = element.getBoundingClientRect();
  return {x: box.x, y: box.y, width: box.width, height: box.height};
}"""

SCROLL_INTO_VIEW = """element => {
  element.scrollIntoView({block: 'nearest', inline: 'nearest'});
}"""


class BidiError(Exception):
    """A command that Firefox refused, or a script that threw."""


def local_value(value):
    """A Python value as a BiDi LocalValue."""
    if value is None:
        return {"type": "undefined"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, (int, float)):
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    raise TypeError(f"cannot pass {value!r} to the page")


def python_value(remote):
    """A BiDi RemoteValue as a Python value."""
    kind = remote["type"]
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean"):
        return remote["value"]
    if kind == "number":
        value = remote["value"]
        # NaN, -0 and the infinities come as strings.
        return float(value) if isinstance(value, str) else value
    if kind == "object":
        return {key: python_value(v) for key, v in remote["value"]}
    raise BidiError(f"the page returned a {kind}, which the tests do not use")


class Session:
    """One BiDi websocket: a command, then its answer."""

    def __init__(self, url):
        self.socket = connect(url, proxy=None, compression=None, max_size=None)
        self.last_id = 0

    def send(self, method, timeout=DEFAULT_TIMEOUT / 1000, **params):
        self.last_id += 1
        command = {"id": self.last_id, "method": method, "params": params}
        self.socket.send(json.dumps(command))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} in {timeout} s")
            message = json.loads(self.socket.recv(timeout=left))
            # Events are not answers.
            if message.get("id") != self.last_id:
                continue
            if message.get("type") == "error":
                error, text = message["error"], message["message"]
                raise BidiError(f"{method}: {error}: {text}")
            return message["result"]

    def close(self):
        self.socket.close()


class Keyboard:
    def __init__(self, page):
        self.page = page

    def press(self, key):
        value = KEYS.get(key, key)
        if len(value) != 1:
            raise ValueError(f"unknown key {key!r}")
        self.page.perform(
            {
                "type": "key",
                "id": "keyboard",
                "actions": [
                    {"type": "keyDown", "value": value},
                    {"type": "keyUp", "value": value},
                ],
            }
        )


class Mouse:
    def __init__(self, page):
        self.page = page

    def click(self, x, y):
        self.page.perform(
            {
                "type": "pointer",
                "id": "mouse",
                "parameters": {"pointerType": "mouse"},
                "actions": [
                    {"type": "pointerMove", "x": round(x), "y": round(y)},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pointerUp", "button": 0},
                ],
            }
        )


class Locator:
    def __init__(self, page, selector):
        self.page = page
        self.selector = selector

    def bounding_box(self):
        return self.page.on_element(self.selector, BOUNDING_BOX)

    def click(self):
        self.page.on_element(self.selector, SCROLL_INTO_VIEW)
        box = self.bounding_box()
        self.page.mouse.click(
            box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        )


class Page:
    """The top-level browsing context of a BiDi session."""

    def __init__(self, session, context):
        self.session = session
        self.context = context
        self.keyboard = Keyboard(self)
        self.mouse = Mouse(self)

    def goto(self, url, wait_until="load", timeout=DEFAULT_TIMEOUT):
        readiness = {"domcontentloaded": "interactive", "load": "complete"}
        self.session.send(
            "browsingContext.navigate",
            timeout=timeout / 1000,
            context=self.context,
            url=url,
            wait=readiness[wait_until],
        )

    def call(self, declaration, *args, timeout=DEFAULT_TIMEOUT):
        result = self.session.send(
            "script.callFunction",
            timeout=timeout / 1000 + ANSWER_MARGIN,
            functionDeclaration=declaration,
            arguments=[local_value(a) for a in args],
            target={"context": self.context},
            awaitPromise=True,
        )
        if result["type"] == "exception":
            raise BidiError(f"in the page: {result['exceptionDetails']['text']}")
        return python_value(result["result"])

    def evaluate(self, expression, arg=None):
        return self.call(CALL.format(expression=expression), arg)

    def wait_for_function(self, expression, arg=None, timeout=DEFAULT_TIMEOUT):
        wait = WAIT.format(call=CALL.format(expression=expression))
        self.call(wait, arg, timeout, timeout=timeout)

    def on_element(self, selector, declaration, *args):
        call = ON_ELEMENT.format(declaration=declaration)
        return self.call(call, selector, *args)

    def locator(self, selector):
        return Locator(self, selector)

    def fill(self, selector, value):
        self.on_element(selector, FILL, value)

    def dispatch_event(self, selector, kind):
        self.on_element(selector, DISPATCH, kind)

    def select_option(self, selector, value):
        self.on_element(selector, SELECT, value)

    def perform(self, source):
        self.session.send(
            "input.performActions", context=self.context, actions=[source]
        )
        self.session.send("input.releaseActions", context=self.context)


def bidi_url(profile, firefox, deadline):
    """The websocket of the BiDi server, once Firefox has written it."""
    server = os.path.join(profile, "WebDriverBiDiServer.json")
    while True:
        if firefox.poll() is not None:
            raise RuntimeError(f"firefox-esr ended with {firefox.returncode}")
        try:
            with open(server, encoding="utf-8") as file:
                address = json.load(file)
            return f"ws://{address['ws_host']}:{address['ws_port']}/session"
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("firefox-esr did not start its BiDi server in time")
        time.sleep(0.05)


def stop_on_sigterm(*_):
    # A test that gives up on us: still kill Firefox and remove its profile.
    raise SystemExit(128 + signal.SIGTERM)


@contextlib.contextmanager
def firefox_page(viewport, executable="firefox-esr", start_timeout=30):
    """A page of a new headless Firefox, `viewport` as Playwright's."""
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    home = tempfile.mkdtemp(prefix="gst-kafka-firefox-")
    profile = os.path.join(home, "profile")
    os.mkdir(profile)
    log_path = os.path.join(home, "firefox.log")
    firefox = None
    session = None
    try:
        with open(log_path, "wb") as log:
            # Its own process group, so that its content processes go with it.
            firefox = subprocess.Popen(
                [
                    executable,
                    "--headless",
                    "--no-remote",
                    "--profile",
                    profile,
                    # Any free port: Firefox writes which into the profile.
                    "--remote-debugging-port=0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        session = Session(bidi_url(profile, firefox, time.monotonic() + start_timeout))
        session.send("session.new", capabilities={})
        tree = session.send("browsingContext.getTree", maxDepth=0)
        context = tree["contexts"][0]["context"]
        session.send(
            "browsingContext.setViewport", context=context, viewport=viewport
        )
        yield Page(session, context)
    except BaseException:
        with contextlib.suppress(OSError):
            with open(log_path, encoding="utf-8", errors="replace") as log:
                output = log.read()[-4000:]
            print(f"firefox-esr's output:\n{output}", file=sys.stderr)
        raise
    finally:
        # A SIGTERM now would cut the cleaning short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        if firefox is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(firefox.pid, signal.SIGKILL)
            firefox.wait()
        shutil.rmtree(home, ignore_errors=True)
