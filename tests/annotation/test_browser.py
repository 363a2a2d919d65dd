"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright): log in,
label three items with the keyboard (one irrelevant, with a replacement picked by arrow key),
watch the progress change, undo, log out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from annotation import queue, results
from annotation.app import AppSettings, create_app
from mesed_build import store as st
from tests.annotation.conftest import PASSWORD, add_user
from tests.annotation.live import LiveServer

CHROMIUM = os.environ.get("MESED_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
# set to write the README's screenshots (docs/) from this test's pages
SCREENSHOTS = os.environ.get("MESED_SCREENSHOT_DIR")


def labels_in(store):
    lab = st.annotation_labels
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(lab.c.label, lab.c.replacement_sha256, lab.c.replacement_label).order_by(lab.c.label_id))]


def test_keyboard_review_in_chromium(demo_factory, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    demo = demo_factory({"overlap_share": 0.25, "calibration_share": 0.0})
    add_user(demo, "alice")
    add_user(demo, "root", "admin")
    app = create_app(demo.store, AppSettings(content_root=demo.root, options=demo.options()))
    with LiveServer(app) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.set_default_timeout(20_000)
            page.goto(server.url + "/queue")
            expect(page).to_have_url(server.url + "/login")
            page.fill('input[name="username"]', "alice")
            page.fill('input[name="password"]', PASSWORD)
            page.click('button[type="submit"]')
            expect(page).to_have_url(server.url + "/queue")
            labelled = page.locator("#labelled")

            def shows(count: str) -> None:
                expect(labelled).to_have_text(count)
                page.wait_for_selector('html[data-keys="ready"]', state="attached")

            shows("0")

            page.keyboard.press("1")
            assert page.is_checked('input[name="label"][value="ES"]')
            page.keyboard.press("Enter")
            shows("1")

            page.keyboard.press("2")
            page.keyboard.press("Enter")
            shows("2")

            choices = page.locator('input[name="replacement"]')
            second_choice = choices.nth(1).get_attribute("value")
            page.keyboard.press("3")
            expect(page.locator("#replacements")).to_have_class("replacements active")
            page.keyboard.press("ArrowRight")
            assert choices.nth(1).is_checked()
            if SCREENSHOTS:
                Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(SCREENSHOTS) / "annotation-queue.png"), full_page=True)
            page.keyboard.press("Enter")
            shows("3")
            assert labels_in(demo.store) == [("ES", None, None), ("S", None, None), ("IR", second_choice, "ES")]

            page.keyboard.press("u")  # undo the irrelevant one: the same item comes back
            shows("2")
            assert len(labels_in(demo.store)) == 2
            page.keyboard.press("3")
            page.keyboard.press("ArrowLeft")  # wraps around to "none fits"
            assert page.is_checked('input[name="replacement"][value="none"]')
            page.keyboard.press("Enter")
            shows("3")
            assert labels_in(demo.store)[-1] == ("IR", None, None)

            page.click("#logout")
            expect(page).to_have_url(server.url + "/login")
            page.goto(server.url + "/queue")
            expect(page).to_have_url(server.url + "/login")

            # three more annotators work through part of the queue, so the dashboard has agreement to show
            options = demo.options()
            for name in ("bob", "carol", "dave"):
                user = add_user(demo, name)
                for n in range(20):
                    item = queue.next_item(demo.store, user.user_id, options)
                    if item is None:
                        break
                    # they mostly agree (a label fixed by the item), dave once disagrees
                    label = "S" if int(item["position"][:2], 16) % 3 == 0 else "ES"
                    if name == "dave" and n == 1:
                        label = "ES" if label == "S" else "S"
                    queue.submit_label(demo.store, user.user_id, item["item_id"], label)
            kappa = results.agreement(results.load_votes(demo.store))["kappa"]
            assert kappa is not None

            page.fill('input[name="username"]', "root")
            page.fill('input[name="password"]', PASSWORD)
            page.click('button[type="submit"]')
            expect(page).to_have_url(server.url + "/admin")
            expect(page.locator("#overall-progress")).to_contain_text(" of 48 items complete")
            expect(page.locator("#table1")).to_contain_text("Re-ranking")
            expect(page.locator("#kappa")).to_have_text(f"{kappa:.3f}")
            if SCREENSHOTS:
                page.screenshot(path=str(Path(SCREENSHOTS) / "annotation-dashboard.png"), full_page=True)
        finally:
            browser.close()
