"""The web page in real headless Chromium against a real server (real `mini` model, real photos):
every mode, alt text on every result image, screenshots, and an axe-core accessibility check."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import copy_photos, with_exif

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
AXE = ROOT / ".cache" / "node_modules" / "axe-core" / "axe.min.js"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos):
    base = tmp_path_factory.mktemp("web")
    folder = copy_photos(
        photos,
        base / "pics",
        [
            "chelsea.png",
            "coffee.png",
            "rocket.jpg",
            "astronaut.png",
            "fruits.jpg",
            "butterfly.jpg",
            "LadyBird.jpg",
            "YellowFlower.jpg",
        ],
    )
    # a photo with the header a phone writes (date, camera, GPS in Paris), and a second copy of
    # one file: the detail view's facts and the duplicates view have something to show
    with_exif(
        folder / "coffee.png",
        folder / "paris.jpg",
        "Apple",
        "iPhone 13",
        "2024:05:01 09:30:00",
        "+02:00",
        ("N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 8.0)),
    )
    (folder / "copy").mkdir()
    shutil.copy(folder / "rocket.jpg", folder / "copy" / "rocket.jpg")
    db = base / "db"

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "viewfinder", *map(str, a)], check=True, capture_output=True
        )

    run("index", folder, "--db", db, "--quiet", "--workers", 1)
    labels = base / "labels.txt"
    labels.write_text("a cat\na cup of coffee\na rocket\nan astronaut\na butterfly\nflowers\n")
    run("texts", "add", labels, "--db", db)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewfinder", "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if json.load(urllib.request.urlopen(url + "/health", timeout=1))["status"] == "ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start")
    yield url, folder
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("chromium and chromium-driver are needed (scripts/setup.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def _wait(cond, timeout=60):
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.time() + timeout
    while time.time() < end:
        try:
            value = cond()
        except StaleElementReferenceException:  # the grid was re-rendered while we read it
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def _results(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results img")


def _loaded_images(driver):
    imgs = _results(driver)
    ok = imgs and all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
        for i in imgs
    )
    return imgs if ok else None


def _serious_violations(browser, report: str) -> list:
    """axe-core's serious and critical findings on the page as it is now (all saved to `report`)."""
    browser.execute_script(AXE.read_text())
    result = browser.execute_async_script(
        "const done = arguments[0]; axe.run(document).then(r => done(r.violations));"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / report).write_text(json.dumps(result, indent=2))
    return [(v["id"], v["help"]) for v in result if v["impact"] in ("serious", "critical")]


def test_every_mode_renders_results_with_alt_text(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, folder = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(url + "/")
    _wait(lambda: "images indexed" in browser.find_element(By.ID, "stats").text)

    # text search, driven from the keyboard
    box = browser.find_element(By.ID, "q")
    box.send_keys("a cat", Keys.ENTER)
    alts = _wait(lambda: [i.get_attribute("alt") for i in _loaded_images(browser) or []])
    assert len(alts) == 10
    assert all(a.strip() for a in alts)
    status = browser.find_element(By.ID, "status").text
    assert "result" in status or "No good match" in status
    browser.save_screenshot(str(SHOTS / "text_search.png"))

    # detail view: why it matched
    browser.find_element(By.CSS_SELECTOR, "#results button.hit").send_keys(Keys.ENTER)
    _wait(lambda: browser.find_element(By.ID, "detail").get_attribute("open") is not None)
    assert "score" in browser.find_element(By.ID, "detail-explain").text
    assert "match" in browser.find_element(By.ID, "detail-verdict").text  # the confidence in words
    browser.save_screenshot(str(SHOTS / "detail.png"))
    # where it matches: the heatmap overlay from GET /explain, with its summary in words
    browser.find_element(By.ID, "detail-where").click()
    _wait(lambda: "Where it matches" in browser.find_element(By.ID, "detail-where-summary").text)
    assert browser.find_element(By.ID, "detail-where").get_attribute("aria-pressed") == "true"
    assert "lit where it matches" in browser.find_element(By.ID, "detail-img").get_attribute("alt")
    browser.save_screenshot(str(SHOTS / "detail_heatmap.png"))
    browser.find_element(By.ID, "detail-close").click()

    # image search by upload
    browser.find_element(By.ID, "tab-image").click()
    browser.find_element(By.ID, "file").send_keys(str(folder / "chelsea.png"))
    browser.find_element(By.ID, "go").click()
    _wait(lambda: (imgs := _loaded_images(browser)) and "chelsea" in imgs[0].get_attribute("alt") and imgs)
    browser.save_screenshot(str(SHOTS / "image_search.png"))

    # hybrid with the weight slider
    browser.find_element(By.ID, "tab-hybrid").click()
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("a rocket")
    browser.find_element(By.ID, "go").click()
    _wait(lambda: _loaded_images(browser))
    browser.save_screenshot(str(SHOTS / "hybrid_search.png"))

    # image -> text
    browser.find_element(By.ID, "tab-describe").click()
    browser.find_element(By.ID, "go").click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#texts li"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#texts li")) == 6
    browser.save_screenshot(str(SHOTS / "image_to_text.png"))


def test_tabs_work_from_the_keyboard(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, _ = server
    browser.get(url + "/")
    tab = browser.find_element(By.ID, "tab-text")
    tab.send_keys(Keys.ARROW_RIGHT)
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "tab-image" and active.get_attribute("aria-selected") == "true"
    assert browser.find_element(By.ID, "image-row").is_displayed()


def test_no_serious_accessibility_violations(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert AXE.exists(), "axe-core missing: scripts/setup.sh installs it from npm"
    url, _ = server
    browser.get(url + "/")
    browser.find_element(By.ID, "q").send_keys("a butterfly", Keys.ENTER)
    _wait(lambda: _loaded_images(browser))
    assert not _serious_violations(browser, "axe_violations.json")


def test_api_docs_render_offline(server, browser):
    """/docs loads Swagger UI from the package (this machine has no route to a CDN) and shows
    the API's operations."""
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.get(url + "/docs")
    ops = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {op.text.strip() for op in ops}
    assert {"/search", "/stats", "/texts"} <= paths, paths
    assert not any(
        "cdn" in (s.get_attribute("src") or "") for s in browser.find_elements(By.TAG_NAME, "script")
    )
    browser.save_screenshot(str(SHOTS / "api_docs.png"))


def test_query_in_the_address_bar_back_and_load_more(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, _ = server
    browser.get(url + "/?q=a%20cat")  # a bookmarked search runs on load
    _wait(lambda: len(_loaded_images(browser) or []) == 10)
    assert browser.find_element(By.ID, "q").get_attribute("value") == "a cat"

    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("3")
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("a rocket", Keys.ENTER)
    _wait(lambda: len(_loaded_images(browser) or []) == 3)
    assert "q=a%20rocket" in browser.current_url
    more = browser.find_element(By.ID, "more")
    assert more.is_displayed()
    more.click()  # the next page is added below the first
    _wait(lambda: len(_loaded_images(browser) or []) == 6)
    ranks = [m.text.split(" ")[0] for m in browser.find_elements(By.CSS_SELECTOR, "#results .meta")]
    assert ranks == ["#1", "#2", "#3", "#4", "#5", "#6"]

    browser.back()  # back to the cat search, run again
    _wait(lambda: browser.find_element(By.ID, "q").get_attribute("value") == "a cat")
    assert "q=a%20cat" in browser.current_url


def test_filter_controls(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, _ = server
    browser.get(url + "/")
    browser.find_element(By.CSS_SELECTOR, "#filters summary").click()
    browser.find_element(By.ID, "f-type").send_keys("png")
    browser.find_element(By.ID, "q").send_keys("a cat", Keys.ENTER)
    # 3 of the 10 sample photos are PNGs: only they come back
    alts = _wait(lambda: [i.get_attribute("alt") for i in _loaded_images(browser) or []])
    assert len(alts) == 3
    assert "q=a%20cat" in browser.current_url  # the typed words, not the filter tokens


def test_browse_detail_facts_and_duplicates(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(url + "/")
    browser.find_element(By.ID, "tab-browse").click()
    assert not browser.find_element(By.ID, "q").is_displayed()  # no query: the library itself
    browser.find_element(By.ID, "f-place").send_keys("Paris")
    browser.find_element(By.ID, "go").click()
    imgs = _wait(lambda: _loaded_images(browser))
    assert len(imgs) == 1 and imgs[0].get_attribute("alt").startswith("paris.jpg")
    assert "1 of 1 images" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(SHOTS / "browse_place.png"))

    # the detail view lists what the header said, and opens the original
    browser.find_element(By.CSS_SELECTOR, "#results button.hit").click()
    facts = _wait(lambda: browser.find_element(By.ID, "detail-facts").text)
    expected_facts = (
        "9:30",
        "2024",
        "UTC+02:00",
        "Paris",
        "France",
        "48.85667, 2.35222",
        "iPhone 13",
        "pixels",
    )
    for expected in expected_facts + ("paris.jpg",):
        assert expected in facts, (expected, facts)
    assert browser.find_element(By.ID, "detail-title").text == "Image details"
    assert not browser.find_element(By.ID, "detail-verdict").is_displayed()  # no query, no score
    assert "/images/" in browser.find_element(By.ID, "detail-open").get_attribute("href")
    browser.save_screenshot(str(SHOTS / "detail_facts.png"))
    assert not _serious_violations(browser, "axe_detail_facts.json")
    browser.find_element(By.ID, "detail-close").click()

    # all of it, newest first; previous / next walk through it from the keyboard
    browser.find_element(By.ID, "f-place").clear()
    browser.find_element(By.ID, "go").click()
    _wait(lambda: len(_loaded_images(browser) or []) == 10)
    first = browser.find_element(By.CSS_SELECTOR, "#results img").get_attribute("src")  # by id
    browser.find_element(By.CSS_SELECTOR, "#results button.hit").click()
    _wait(lambda: browser.find_element(By.ID, "detail-pos").text == "1 of 10")
    assert browser.find_element(By.ID, "detail-prev").get_attribute("disabled") is not None
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    _wait(lambda: browser.find_element(By.ID, "detail-pos").text == "2 of 10")
    assert browser.find_element(By.ID, "detail-img").get_attribute("src") != first.replace(
        "thumbnails", "images"
    )
    browser.find_element(By.ID, "detail-prev").click()
    _wait(
        lambda: (
            browser.find_element(By.ID, "detail-img").get_attribute("src")
            == first.replace("thumbnails", "images")
        )
    )
    browser.find_element(By.ID, "detail-close").click()

    # duplicates: the two copies of rocket.jpg side by side, with what joined them
    browser.find_element(By.ID, "tab-duplicates").click()
    Select(browser.find_element(By.ID, "level")).select_by_value("exact")
    browser.find_element(By.ID, "go").click()
    group = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#groups > li"))
    assert len(group) == 1 and "2 copies of the same file" in group[0].text
    names = [f.text for f in group[0].find_elements(By.TAG_NAME, "figcaption")]
    assert names == ["rocket.jpg", "rocket.jpg"]
    _wait(
        lambda: all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
            for i in group[0].find_elements(By.TAG_NAME, "img")
        )
    )
    browser.save_screenshot(str(SHOTS / "duplicates.png"))
    assert not _serious_violations(browser, "axe_duplicates.json")
    Select(browser.find_element(By.ID, "level")).select_by_value("near")
    browser.find_element(By.ID, "go").click()
    _wait(
        lambda: (
            "duplicate" in browser.find_element(By.ID, "status").text.lower()
            or "group" in browser.find_element(By.ID, "status").text
        )
    )
    # the near level joins the copies too (same picture), at cosine 1.000
    assert "cosine 1.000" in browser.find_element(By.ID, "groups").text
