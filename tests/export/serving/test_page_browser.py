"""The see-inside page in a real browser: headless Chromium driven by Selenium, against a real
``kcnn-serve`` subprocess on 127.0.0.1.

Draws a stroke, checks the predictions (equal to ``/v1/predict``'s for the same image), that the
feature-map tiles are drawn for every conv/pool layer and the first-layer kernels as a grid,
uploads an image file, clicks conv and pooling pixels (the window view's products, per-channel
sums, bias, activation and value add up to the map's value; the window is outlined on the
previous maps or the image; padding is marked), checks the 320 px and 1280 px layouts and that
the browser logged no console error. Screenshots go to ``$KCNN_TEST_ARTIFACTS/page`` (default ``test-artifacts/page``
in the repository). Needs Debian's ``chromium`` and ``chromium-driver`` and PyPI's ``selenium``
(``.ci/install`` installs them); skipped, saying so, only where they are missing.
"""
import os
import pathlib
import shutil
import tempfile

import httpx
import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import kcnn.models
from kcnn.export import export_onnx
from kcnn_serve_process import Server

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - .ci/install installs selenium
    pytest.skip("the browser test needs selenium (pip install selenium; .ci/install does)",
                allow_module_level=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):  # pragma: no cover - .ci/install installs both
    pytest.skip("the browser test needs Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver; .ci/install does)",
                allow_module_level=True)

ROOT = pathlib.Path(__file__).resolve().parents[3]
ARTIFACTS = pathlib.Path(os.environ.get("KCNN_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "page"
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LENET_LAYERS = ["conv1", "pool1", "conv2", "pool2"]
CHANNELS = {"conv1": 6, "pool1": 6, "conv2": 16, "pool2": 16}
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    keras.utils.set_random_seed(5)
    explained = export_onnx(kcnn.models.lenet("builtin"), folder / "lenet.onnx", labels=LABELS,
                            explain=True).path
    plain = export_onnx(kcnn.models.lenet("builtin"), folder / "plain.onnx", labels=LABELS).path
    digit = np.round(load_digits().images[3] * (255 / 16)).astype(np.uint8)
    image = folder / "three.png"
    Image.fromarray(digit, "L").resize((64, 64), Image.BILINEAR).save(image)
    return explained, plain, image


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="kcnn-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def viewport(driver, width, height=900):
    """Emulate a ``width`` px wide screen (desktop windows cannot be made 320 px narrow)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def painted(driver):
    """Return once the browser has laid out and painted twice (after a viewport change)."""
    driver.execute_async_script(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")


def screenshot(driver, name, width):
    """Full-page screenshot ``name`` at ``width`` px into the artefact folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    viewport(driver, width)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    viewport(driver, width, min(int(height), 6000))
    painted(driver)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    viewport(driver, width)
    return path


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_ready(driver, url):
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def wait_prediction(driver, status_before):
    """Wait for the status line to change from ``status_before`` to a finished prediction."""
    WebDriverWait(driver, 30).until(lambda d: (
        d.find_element(By.ID, "status").text != status_before
        and d.find_element(By.ID, "status").text.startswith(("Predicted", "Could not"))))
    status = driver.find_element(By.ID, "status").text
    assert status.startswith("Predicted"), status


def shown_predictions(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, "#predictions .prediction")
    return [(row.find_element(By.CLASS_NAME, "label").text,
             row.find_element(By.CLASS_NAME, "score").text,
             row.find_element(By.CLASS_NAME, "fill").value_of_css_property("width")) for row in rows]


def served_prediction(url, body, content_type="image/png"):
    answer = httpx.post(f"{url}/v1/predict?top_k=5", content=body,
                        headers={"content-type": content_type})
    return [(item["label"], f"{100 * item['score']:.1f} %")
            for item in answer.json()["predictions"][0]["top_k"]]


def canvas_png(driver):
    import base64

    data = driver.execute_script("return document.getElementById('draw').toDataURL('image/png')")
    return base64.b64decode(data.split(",", 1)[1])


# Per layer: name, channel tiles, tiles with any non-black pixel, tile size, the shape text.
LAYERS_JS = """
return [...document.querySelectorAll('#feature-maps .layer')].map((layer) => {
  const tiles = [...layer.querySelectorAll('canvas.tile')];
  const lit = tiles.filter((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  }).length;
  return [layer.dataset.name, tiles.length, lit, tiles.length ? [tiles[0].width, tiles[0].height] : null,
          layer.querySelector('.shape').textContent];
});
"""

LABELS_JS = """
return ['draw', 'predict', 'clear', 'file'].map((id) => {
  const node = document.getElementById(id);
  const label = document.querySelector(`label[for="${id}"]`);
  return [id, node.getAttribute('aria-label') || (label && label.textContent.trim()) || ''];
});
"""


# The panel of the window view: where it is, its grids (every cell's full value) and its sum lines.
PANEL_JS = """
const box = document.getElementById('window-view');
const grid = (role) => {
  const figure = box.querySelector(`.grid-box[data-role="${role}"]`);
  return figure ? [...figure.querySelectorAll('tr')].map(
    (tr) => [...tr.querySelectorAll('td')].map((td) => [Number(td.dataset.v), td.classList.contains('pad')])) : null;
};
const lines = Object.fromEntries([...box.querySelectorAll('.sum-line')].map((l) => [l.dataset.key, Number(l.dataset.v)]));
const sums = [...box.querySelectorAll('.channel-sums button')].map((b) => Number(b.dataset.v));
return {layer: box.dataset.layer, kind: box.dataset.kind, channel: Number(box.dataset.channel),
        row: Number(box.dataset.row), col: Number(box.dataset.col), window: grid('window'),
        kernel: grid('kernel'), products: grid('products'), lines, sums,
        marks: document.querySelectorAll('.window-mark').length,
        pixel: document.querySelectorAll('.pixel-mark').length};
"""


def click_pixel(driver, layer, channel, row, col):
    """Click the centre of pixel (row, col) of ``layer``'s tile ``channel``; wait for the panel."""
    tile = driver.find_element(
        By.CSS_SELECTOR, f'#feature-maps .layer[data-name="{layer}"] canvas[data-channel="{channel}"]')
    inner = driver.execute_script(
        "const t = arguments[0]; return [t.clientWidth, t.clientHeight, t.width, t.height, "
        "t.clientLeft, t.clientTop, t.offsetWidth, t.offsetHeight];", tile)
    cw, ch, w, h, bl, bt, ow, oh = inner
    x = bl + (col + 0.5) * cw / w - ow / 2  # offsets from the element's centre (Selenium 4)
    y = bt + (row + 0.5) * ch / h - oh / 2
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", tile)
    ActionChains(driver).move_to_element_with_offset(tile, int(round(x)), int(round(y))).click().perform()
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "const b = document.getElementById('window-view'); return b.dataset.layer === arguments[0] "
        "&& Number(b.dataset.row) === arguments[1] && Number(b.dataset.col) === arguments[2]",
        layer, row, col))
    return driver.execute_script(PANEL_JS)


def feature(url, body, layer, channel, row, col):
    import base64

    document = httpx.post(f"{url}/v1/explain", content=body,
                          headers={"content-type": "image/png"}).json()
    item = next(item for item in document["layers"] if item["name"] == layer)
    h, w, c = item["shape"]
    values = np.frombuffer(base64.b64decode(item["data"]), "<f4").reshape(c, h, w)
    return float(values[channel, row, col])


def check_window_view(driver, url, body):
    """Click a conv2 and a pool1 pixel: the panel's numbers add up to the map's value."""
    panel = click_pixel(driver, "conv2", 3, 2, 7)
    assert (panel["kind"], panel["channel"]) == ("conv", 3)
    window, kernel, products = (np.array([[v for v, _ in row] for row in panel[k]])
                                for k in ("window", "kernel", "products"))
    assert window.shape == kernel.shape == (5, 5)
    np.testing.assert_allclose(products, window * kernel, rtol=1e-12, atol=0)
    lines, sums = panel["lines"], panel["sums"]
    assert len(sums) == 6  # pool1's six channels feed conv2
    assert lines["channel-sum"] == pytest.approx(products.sum(), rel=1e-9, abs=1e-12)
    assert lines["channel-sum"] == pytest.approx(sums[0], rel=1e-12)
    assert lines["sum"] == pytest.approx(sum(sums), rel=1e-9, abs=1e-12)
    assert lines["pre"] == pytest.approx(lines["sum"] + lines["bias"], rel=1e-12, abs=1e-12)
    assert lines["value"] == pytest.approx(1 / (1 + np.exp(-lines["pre"])), rel=1e-9)  # sigmoid
    assert lines["value"] == pytest.approx(feature(url, body, "conv2", 3, 2, 7), abs=1e-4)
    assert panel["marks"] == 6 and panel["pixel"] == 1  # the window on each pool1 map
    # Another input channel from the picker: its own window, kernel and sum.
    Select(driver.find_element(By.ID, "window-channel")).select_by_index(4)
    panel = driver.execute_script(PANEL_JS)
    products = np.array([[v for v, _ in row] for row in panel["products"]])
    assert panel["lines"]["channel-sum"] == pytest.approx(products.sum(), rel=1e-9, abs=1e-12)
    assert panel["lines"]["channel-sum"] == pytest.approx(panel["sums"][4], rel=1e-12)
    screenshot(driver, "page-window-conv-1280.png", 1280)
    # The keyboard: with the panel focused, an arrow key moves the pixel (and its numbers).
    driver.find_element(By.ID, "window-view").send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(PANEL_JS)["col"] == 8)
    panel = driver.execute_script(PANEL_JS)
    assert (panel["layer"], panel["channel"], panel["row"]) == ("conv2", 3, 2)
    assert panel["lines"]["value"] == pytest.approx(feature(url, body, "conv2", 3, 2, 8), abs=1e-4)

    panel = click_pixel(driver, "pool1", 1, 13, 0)
    assert panel["kind"] == "pool" and panel["kernel"] is None
    window = np.array([[v for v, _ in row] for row in panel["window"]])
    assert panel["lines"]["value"] == pytest.approx(window.mean(), rel=1e-9)  # 2x2 average
    assert panel["lines"]["value"] == pytest.approx(feature(url, body, "pool1", 1, 13, 0), abs=1e-4)
    assert panel["marks"] == 6  # on conv1's maps
    panel = click_pixel(driver, "conv1", 0, 0, 0)  # a corner: the window hangs over the padding
    padded = np.array([[pad for _, pad in row] for row in panel["window"]])
    assert padded[:2].all() and padded[:, :2].all() and not padded[2:, 2:].any()
    assert panel["marks"] == 1  # on the input image
    assert panel["lines"]["value"] == pytest.approx(feature(url, body, "conv1", 0, 0, 0), abs=1e-4)
    panel = click_pixel(driver, "conv2", 3, 2, 7)  # back to the conv pixel for the screenshots


@pytest.mark.slow
def test_draw_predict_upload_in_a_real_browser(models, browser):
    explained, _, image = models
    with Server(explained) as server:
        viewport(browser, 1280)
        wait_ready(browser, server.url)
        assert all(name for _, name in browser.execute_script(LABELS_JS))

        # Draw a "1"-like stroke: the prediction comes on pointerup (stroke end).
        canvas = browser.find_element(By.ID, "draw")
        status = browser.find_element(By.ID, "status").text
        chain = ActionChains(browser).move_to_element_with_offset(canvas, 0, -90).click_and_hold()
        for _ in range(9):
            chain = chain.move_by_offset(2, 20)
        chain.release().perform()
        wait_prediction(browser, status)
        shown = shown_predictions(browser)
        assert len(shown) == 5 and all(label in LABELS for label, _, _ in shown)
        assert [(label, score) for label, score, _ in shown] == served_prediction(
            server.url, canvas_png(browser))
        assert float(shown[0][2].rstrip("px")) > 0  # the top bar has a width

        layers = browser.execute_script(LAYERS_JS)
        assert [row[0] for row in layers] == LENET_LAYERS
        for name, tiles, lit, size, shape_text in layers:
            assert tiles == CHANNELS[name], name
            assert lit >= 1, f"{name}: no tile drawn"
        assert layers[0][3] == [28, 28] and layers[0][4].startswith("28×28×6")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#kernels .kernel canvas")) == 6
        assert browser.execute_script(
            "const c = document.getElementById('model-input'); return [c.width, c.height]") == [28, 28]

        screenshot(browser, "page-drawn-1280.png", 1280)

        # A stroke with a finger, then one with a pen: pointer events of every kind draw.
        for kind in (interaction.POINTER_TOUCH, interaction.POINTER_PEN):
            browser.execute_script("document.getElementById('status').textContent = 'waiting'")
            before = canvas_png(browser)
            actions = ActionBuilder(browser, mouse=PointerInput(kind, kind))
            x, y = canvas.location["x"] + canvas.size["width"] // 2, canvas.location["y"] + 60
            actions.pointer_action.move_to_location(x - 60, y).pointer_down()
            for step in range(1, 7):
                actions.pointer_action.move_to_location(x - 60 + 20 * step, y + 10 * step)
            actions.pointer_action.pointer_up()
            actions.perform()
            wait_prediction(browser, "waiting")
            assert canvas_png(browser) != before, f"a {kind} stroke drew nothing"
        shown = shown_predictions(browser)

        # The Predict button asks again for the same drawing.
        status = browser.find_element(By.ID, "status").text
        browser.execute_script("document.getElementById('status').textContent = 'waiting'")
        browser.find_element(By.ID, "predict").click()
        wait_prediction(browser, "waiting")
        assert [(label, score) for label, score, _ in shown_predictions(browser)] == \
            [(label, score) for label, score, _ in shown]

        # Choose an image file: the file itself is sent, as /v1/predict would get it.
        browser.execute_script("document.getElementById('status').textContent = 'waiting'")
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait_prediction(browser, "waiting")
        assert [(label, score) for label, score, _ in shown_predictions(browser)] == \
            served_prediction(server.url, image.read_bytes())
        assert len(browser.execute_script(LAYERS_JS)) == len(LENET_LAYERS)

        check_window_view(browser, server.url, image.read_bytes())

        wide = screenshot(browser, "page-1280.png", 1280)
        narrow = screenshot(browser, "page-320.png", 320)
        assert browser.execute_script(
            "return document.documentElement.scrollWidth") <= 320, "horizontal scrolling at 320 px"
        assert wide.stat().st_size > 0 and narrow.stat().st_size > 0
        assert console_errors(browser) == []


@pytest.mark.slow
def test_page_without_explain_data_predicts_and_says_so(models, browser):
    _, plain, image = models
    with Server(plain) as server:
        viewport(browser, 1280)
        wait_ready(browser, server.url)
        assert "without explain data" in browser.find_element(By.ID, "feature-maps").text
        browser.execute_script("document.getElementById('status').textContent = 'waiting'")
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait_prediction(browser, "waiting")
        assert [(label, score) for label, score, _ in shown_predictions(browser)] == \
            served_prediction(server.url, image.read_bytes())
        assert browser.find_elements(By.CSS_SELECTOR, "#feature-maps .layer") == []
        screenshot(browser, "page-no-explain-1280.png", 1280)
        assert console_errors(browser) == []
