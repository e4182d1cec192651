"""Drives the camera wall of mjpeghttpsink in headless Chromium for tests/wall.rs.

Usage: wall.py URL NEW_CAMERA. Prints one line per step, which the test
waits for while it changes the cameras: "moving <names>" once every tile
shows a moving picture, "appeared <name>" once NEW_CAMERA's tile shows a
picture, "stale <name>" once a tile says its camera stopped.
"""

import sys
import time

from playwright.sync_api import sync_playwright

url, new_camera = sys.argv[1], sys.argv[2]


def captions(page):
    return sorted(page.locator(".tile .name").all_inner_texts())


def say(line):
    print(line, flush=True)


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium", args=["--no-sandbox"]
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # MJPEG images never finish loading: wait for the document only.
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(
        "[...document.querySelectorAll('.tile img')].every(i => i.naturalWidth > 0)",
        timeout=15000,
    )
    tiles = page.locator(".tile img")
    before = [tiles.nth(i).screenshot() for i in range(tiles.count())]
    time.sleep(1.5)
    after = [tiles.nth(i).screenshot() for i in range(tiles.count())]
    still = [n for n, (b, a) in zip(captions(page), zip(before, after)) if b == a]
    if still:
        say(f"still {','.join(still)}")
        sys.exit(1)
    say(f"moving {','.join(captions(page))}")

    page.wait_for_function(
        """name => [...document.querySelectorAll('.tile')].some(t =>
            t.querySelector('.name').textContent === name
            && t.querySelector('img').naturalWidth > 0)""",
        arg=new_camera,
        timeout=20000,
    )
    say(f"appeared {new_camera}")

    page.wait_for_function(
        """() => [...document.querySelectorAll('.tile .state')].some(s =>
            s.textContent.startsWith('no picture for'))""",
        timeout=20000,
    )
    stale = page.locator(".tile.stale .name").all_inner_texts()
    say(f"stale {','.join(sorted(stale))}")
    browser.close()
