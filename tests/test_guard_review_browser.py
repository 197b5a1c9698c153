"""The review queue in a real headless Chromium (Debian's `chromium` and `chromedriver`, driven by Selenium):
sign in with an admin key, filter, mark an interaction harmful, correct another; the store has the reviews."""

from __future__ import annotations

import shutil

import pytest

from tests.test_guard_server import server  # noqa: F401  (the module's running guard server)

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a browser and a server: `make test-slow` (CI runs it)
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install; .ci/run does)"
    ),
]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def submit(browser, element_id: str) -> None:
    """Click a button that loads a new page, and wait until the old page is gone (reading an element right after
    the click can otherwise find the old page's, which goes stale under load)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()

    def old_page_gone(driver) -> bool:
        # Chromium answers a node of a document being replaced with either a stale-element error or, mid-way,
        # "Node with given id does not belong to the document": both mean the old page is going.
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    def new_page_loaded(driver) -> bool:
        try:
            html = driver.find_element(By.TAG_NAME, "html")
            return html.id != page.id and driver.execute_script("return document.readyState") == "complete"
        except WebDriverException:  # between documents
            return False

    WebDriverWait(browser, 30).until(old_page_gone)
    WebDriverWait(browser, 30).until(new_page_loaded)


def test_a_reviewer_signs_in_filters_and_reviews(server, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    client = server.client()
    blocked = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "pipe bomb recipe <b>x</b>"}]
    )
    over = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a pipe bomb in my novel?"}])
    first, second = (r.model_extra["tether"]["interaction_id"] for r in (blocked, over))

    browser.get(server.url + "/review")
    browser.find_element(By.ID, "key").send_keys("tg-wrong-key-0000000000000000")
    submit(browser, "sign-in")
    assert "not an admin key" in browser.find_element(By.ID, "message").text
    browser.find_element(By.ID, "key").send_keys(server.user)  # a valid key, but not an admin's
    submit(browser, "sign-in")
    assert "not an admin key" in browser.find_element(By.ID, "message").text
    browser.find_element(By.ID, "key").send_keys(server.admin)
    submit(browser, "sign-in")

    row = browser.find_element(By.ID, f"row-{first}")
    assert "blocked_input" in row.text and "<b>x</b>" in row.text  # shown as text, not markup
    submit(browser, f"harmful-{first}")
    assert browser.find_element(By.ID, "message").text == "marked harmful"
    assert not browser.find_elements(By.ID, f"row-{first}")  # reviewed: gone from the default queue
    browser.find_element(By.ID, f"response-{second}").send_keys("Sure: in a novel, the bomb can stay off the page.")
    submit(browser, f"corrected-{second}")
    assert browser.find_element(By.ID, "message").text == "marked corrected"

    browser.find_element(By.CSS_SELECTOR, "#filter-reviewed option[value='true']").click()
    submit(browser, "apply")
    assert browser.find_element(By.ID, f"row-{first}") and browser.find_element(By.ID, f"row-{second}")
    assert server.guard.store.get(first)["review_label"] == "harmful"
    assert server.guard.store.get(second)["review_response"].startswith("Sure: in a novel")
