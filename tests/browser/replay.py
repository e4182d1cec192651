"""Drives the time travel bar of mjpeghttpsink's page in a headless browser
for tests/replay.rs.

Usage: replay.py BROWSER URL RED_MS GREEN_MS BLUE_MS: BROWSER is chromium
(through Playwright) or firefox (Debian's firefox-esr, through bidi.py), the
same steps in both; the topic holds red frames from RED_MS, green ones from
GREEN_MS (the first green frame is exactly there) and blue ones from
BLUE_MS to the end. Prints one line per step, "<step> <what it saw>"
(mostly the colour of the picture), which the test compares.
"""

import contextlib
import sys
import time

from playwright.sync_api import sync_playwright

import bidi

VIEWPORT = {"width": 1280, "height": 800}


@contextlib.contextmanager
def chromium_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport=VIEWPORT)
        finally:
            browser.close()


BROWSERS = {
    "chromium": chromium_page,
    "firefox": lambda: bidi.firefox_page(VIEWPORT),
}

browser = sys.argv[1]
url = sys.argv[2]
red, green, blue = (int(a) for a in sys.argv[3:6])

# The colour of the picture shown. Through createImageBitmap: Firefox's
# drawImage of an <img> playing a multipart stream keeps giving an earlier
# part while the page shows the newer ones.
COLOUR = """async () => {
  const img = document.querySelector('.tile img');
  if (!img.complete || img.naturalWidth === 0) return 'none';
  let picture;
  try {
    picture = await createImageBitmap(img);
  } catch (e) {
    // The picture changed in between.
    return 'none';
  }
  const canvas = document.createElement('canvas');
  canvas.width = picture.width;
  canvas.height = picture.height;
  const context = canvas.getContext('2d');
  context.drawImage(picture, 0, 0);
  const [r, g, b] = context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
  const max = Math.max(r, g, b);
  return max === r ? 'red' : max === g ? 'green' : 'blue';
}"""


def say(line):
    print(line, flush=True)


def wait_colour(page, step, colour, timeout=15):
    """Waits for the picture to turn `colour`, then reports it. Polled from
    here: Playwright's wait_for_function does not wait for a promise."""
    deadline = time.monotonic() + timeout
    seen = page.evaluate(COLOUR)
    while seen != colour and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = page.evaluate(COLOUR)
    say(f"{step} {seen}")


# From now on /timeline never answers: its requests hang until aborted.
HANG_TIMELINE = """() => {
  const fetchAnswer = window.fetch;
  window.timeline = {started: 0, pending: 0, most: 0};
  window.fetch = (url, options) => {
    if (!String(url).startsWith('/timeline')) return fetchAnswer(url, options);
    const calls = window.timeline;
    calls.started += 1;
    calls.pending += 1;
    calls.most = Math.max(calls.most, calls.pending);
    return new Promise((_, reject) => {
      if (options && options.signal) options.signal.addEventListener('abort', () => {
        calls.pending -= 1;
        reject(new DOMException('aborted', 'AbortError'));
      });
    });
  };
}"""


def local_text(page, ms):
    return page.evaluate(
        "ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 23)",
        ms,
    )


with BROWSERS[browser]() as page:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("!document.getElementById('transport').hidden")
    page.wait_for_function("document.getElementById('tstart').textContent !== ''")
    wait_colour(page, "live", "blue")

    # A date and time typed in: paused there, the frame of that time.
    page.keyboard.press(" ")
    page.wait_for_function("document.getElementById('clock').textContent.includes('paused')")
    page.fill("#when", local_text(page, green + 50))
    page.dispatch_event("#when", "change")
    wait_colour(page, "typed", "green")
    # The page shows what /snapshot.jpg?at= gives for that time.
    same = page.evaluate(
        """async at => {
          const img = document.querySelector('.tile img');
          const shown = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
          const snap = new Uint8Array(await (await fetch('/snapshot.jpg?at=' + at)).arrayBuffer());
          return shown.length === snap.length && shown.every((b, i) => b === snap[i]);
        }""",
        green + 50,
    )
    say(f"snapshot {'same' if same else 'different'}")

    # One frame back from the first green frame is the last red one; and
    # forward again (the keys once the date field has lost the focus).
    page.locator("header").click()
    page.keyboard.press("ArrowLeft")
    wait_colour(page, "back", "red")
    page.keyboard.press("ArrowRight")
    wait_colour(page, "forward", "green")

    # Clicks on the timeline, paused: near its start, near its end.
    box = page.locator("#timeline").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.05, box["y"] + box["height"] / 2)
    wait_colour(page, "click-start", "red")
    page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    wait_colour(page, "click-end", "blue")

    # Play from the red frames at 4x: the picture moves on to green.
    page.fill("#when", local_text(page, red))
    page.dispatch_event("#when", "change")
    wait_colour(page, "paused-red", "red")
    page.select_option("#speed", "4")
    page.locator("header").click()
    page.keyboard.press(" ")
    wait_colour(page, "playing", "green")

    # L: live again, the live stream.
    page.keyboard.press("l")
    page.wait_for_function(
        "!document.querySelector('.tile img').src.includes('at=')"
    )
    wait_colour(page, "live-again", "blue")

    # A /timeline that hangs: however often the page polls, one request at
    # a time; it gives up in time, says so, and asks again.
    page.evaluate(HANG_TIMELINE)
    for _ in range(3):
        page.evaluate("() => { loadTimeline(); }")
    try:
        page.wait_for_function(
            "window.timeline.started > 0 && window.timeline.pending === 0",
            timeout=20000,
        )
    except Exception:
        pass
    most = page.evaluate("window.timeline.most")
    note = page.evaluate("document.getElementById('note').textContent")
    say(f"timeline-hanging {most}")
    say(f"timeline-gave-up {note}")
    page.evaluate("() => { loadTimeline(); }")
    say(f"timeline-asked-again {page.evaluate('window.timeline.started')}")
