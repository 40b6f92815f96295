"""A student's session in a real browser: JupyterLab, a chapter with its figures and widgets, an exercise check.

nbclient proves that a notebook's code runs; it cannot show what a student sees. Here headless Chromium, driven by
Playwright for Python, uses JupyterLab as a student does, on copies of the notebooks (the repository is never written):

* course/index.ipynb (what `make course` opens) links every chapter; its link to chapter 08 (the fastest chapter with
  an explorer: a dropdown and sliders) opens it; in quick mode, Run → Run All Cells, in the project's own kernel
  ("Python 3 (minipeft)"): no cell shows an error, every formula typesets, every matplotlib figure is a decoded image;
  the explorer renders as widgets (not "Error displaying widget"), and choosing another method in its dropdown, then
  moving its size slider one step, changes what it prints and draws;
* exercises/08_unified.ipynb: a right answer to Q3 and `grader.check("q3")` shows the pass line; a wrong one (one
  layer counted instead of 6) shows the hint written for that mistake.

Screenshots go to build/browser/ (NN_*.png; failure.png when a step fails). JupyterLab (with its kernels) and Chromium
are started in their own process groups and stopped by their process ids, also when a step fails. Chromium comes from
the system (`make setup` installs Debian's package: tools/install_chromium.py); the test skips only where it cannot be
installed. The whole test is bounded: every wait shares one 150 s budget (with the shut-down, under 3 minutes).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import course  # noqa: E402
import install_chromium  # noqa: E402

CHAPTER = "08_unified"
SHOTS = ROOT / "build" / "browser"
BUDGET_S = 150  # every wait, from JupyterLab's start to the last check; with the shut-down, under 3 min (issue 16)
# JupyterLab's user settings for the test: no "news?" toast over the notebook, every cell kept in the page
SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                               "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}

pytestmark = pytest.mark.browser


class Budget:
    """One deadline for every wait in the test, so that the test as a whole cannot overrun."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return max(0.001, self.seconds - self.elapsed())

    def ms(self) -> float:
        """Milliseconds left (Playwright's unit); at least 1 so that an overrun fails at the next wait."""
        return 1000 * self.left()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


@pytest.fixture
def chromium() -> str:
    """The Chromium to drive; the test skips only where there is none and it cannot be installed (fails otherwise)."""
    found = install_chromium.find()
    if found:
        return found
    if os.environ.get("CHROMIUM"):
        pytest.fail(f"CHROMIUM={os.environ['CHROMIUM']} is not an executable: unset it or point it at Chromium")
    commands, why = install_chromium.plan()
    if commands is None:
        pytest.skip(f"Chromium is not installed and cannot be installed on this machine ({why})")
    pytest.fail("Chromium is not installed, but it can be on this machine: run `make setup` "
                "(or `python tools/install_chromium.py`)")


def alive(p: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie lingers where nothing reaps it, e.g. in some containers)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(process: subprocess.Popen, descendants: list) -> None:
    """SIGTERM the process's group and every process it started (kernels run in sessions of their own), by id; SIGKILL
    whatever is left after 10 s."""
    procs = [p for p in descendants if alive(p)]
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pgid in {process.pid} | {p.pid for p in procs}:
            try:
                os.killpg(pgid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        psutil.wait_procs(procs, timeout=10)
        if not any(alive(p) for p in procs):
            return


def descendants(process: subprocess.Popen) -> list:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def budget():
    return Budget(BUDGET_S)


@pytest.fixture
def lab(tmp_path, budget):
    """JupyterLab on 127.0.0.1 with a token, serving copies of the chapter and the exercise, in quick mode, with this
    checkout's minipeft first on the kernel's path; yields (base URL, token, served folder)."""
    served = tmp_path / "served"
    for folder in ("course", "exercises"):
        (served / folder).mkdir(parents=True)
        shutil.copy(ROOT / folder / f"{CHAPTER}.ipynb", served / folder)
    shutil.copy(course.INDEX, served / "course")  # its links to the other chapters are checked, not followed
    jupyter = tmp_path / "jupyter"  # config, data and runtime dirs of its own: no user setting or kernel leaks in
    for name, value in SETTINGS.items():
        path = jupyter / "config" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = dict(os.environ, MINIPEFT_QUICK="1", JUPYTER_CONFIG_DIR=str(jupyter / "config"),
               JUPYTER_DATA_DIR=str(jupyter / "data"), JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    port, token = course.free_port(), "browser-test-" + os.urandom(8).hex()
    log = open(tmp_path / "jupyterlab.log", "w")
    process = subprocess.Popen(course.lab_command(served, port, token, browser=False), cwd=served, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = []
    try:
        if not course.wait_for_port(port, timeout=budget.left()):
            log_tail = (tmp_path / "jupyterlab.log").read_text()[-3000:]
            pytest.fail(f"JupyterLab did not start in {budget.elapsed():.0f} s:\n{log_tail}")
        yield f"http://127.0.0.1:{port}", token, served
        started = descendants(process)
    finally:
        stop(process, started or descendants(process))
        log.close()
    assert process.poll() is not None and not any(alive(p) for p in started), "JupyterLab or a kernel still runs"


@pytest.fixture
def browser(tmp_path, budget, chromium):
    """Headless Chromium in its own process group, driven over the DevTools protocol; yields a Playwright Browser."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium"
    log = open(tmp_path / "chromium.log", "w")
    process = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                "about:blank"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = []
    try:
        port_file = profile / "DevToolsActivePort"
        while not (port_file.is_file() and port_file.read_text().strip()):  # Chromium writes its port there
            if process.poll() is not None or budget.left() < 0.01:
                pytest.fail(f"Chromium did not start:\n{(tmp_path / 'chromium.log').read_text()[-3000:]}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with sync_playwright() as playwright:
            connected = playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{port}", timeout=budget.ms())
            started = descendants(process)
            yield connected
            connected.close()
    finally:
        stop(process, started or descendants(process))
        log.close()


def api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def current_notebook(page, budget: Budget):
    """The notebook in the main area's current tab (others stay in the page, hidden), once its kernel is idle."""
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
    notebook = page.locator(f"[id='{tab.get_attribute('data-id', timeout=budget.ms())}']")
    notebook.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=budget.ms())
    status = page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"^(?!No Kernel).* \| Idle$"))
    status.wait_for(timeout=budget.ms())  # the status bar: "<kernel> | Idle" once the kernel has started
    kernel = status.inner_text()
    assert "Python 3 (minipeft)" in kernel, f"the notebook runs in {kernel!r}, not the course's kernel (make setup)"
    return notebook


def cell(notebook, i: int):
    return notebook.locator(".jp-Cell").nth(i)


def run_cell_with(page, notebook, i: int, source: str, budget: Budget) -> None:
    """Replace cell i's code with `source` as a student would (click, select all, type), run it and the next cell."""
    cell(notebook, i).locator(".cm-content").click(timeout=budget.ms())
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(source)
    page.keyboard.press("Shift+Enter")  # runs cell i, selects cell i + 1
    page.keyboard.press("Shift+Enter")


# MathJax in JupyterLab does not stop at bad LaTeX: an error box, an unknown macro in red, or (a brace or $ missing) a
# formula that swallows the text after it, dollar signs included
BAD_MATH = "mjx-merror, mjx-mtext[style*='color: red'], mjx-math mjx-c.mjx-c24"


def bad_formulas(notebook) -> list[str]:
    """The formulas (as MathJax reads them) that did not typeset as written."""
    return notebook.locator(BAD_MATH).evaluate_all(
        "hits => hits.map(e => e.closest('mjx-container').querySelector('mjx-assistive-mml').textContent.slice(0, 80))")


def index_then_chapter(page, base: str, token: str, budget: Budget):
    """What `make course` opens: the index links every chapter; its link opens the chapter."""
    page.goto(f"{base}/lab/tree/course/index.ipynb?reset&token={token}", timeout=budget.ms())
    index = current_notebook(page, budget)
    links = index.locator("h2 a:not(.jp-InternalAnchorLink)")  # not the heading's own ¶ anchor
    links.first.wait_for(timeout=budget.ms())
    hrefs = links.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    names = [h.split("?")[0].split("/")[-1] for h in hrefs]  # JupyterLab resolves them to /files/course/...?_xsrf=
    assert names == [p.name for p in course.chapters()], hrefs
    assert not bad_formulas(index), f"formulas MathJax could not typeset: {bad_formulas(index)}"
    page.screenshot(path=SHOTS / "0_index.png")
    links.nth(names.index(f"{CHAPTER}.ipynb")).click(timeout=budget.ms())
    page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current", has_text=f"{CHAPTER}.ipynb").wait_for(
        timeout=budget.ms())
    return current_notebook(page, budget)


def run_all_and_check_outputs(page, notebook, saved_path: Path, budget: Budget) -> list[str]:
    """Run → Run All Cells; no error, every formula typeset, every figure a decoded image. Returns the stderr texts
    shown (for the report)."""
    page.get_by_role("menuitem", name="Run", exact=True).click(timeout=budget.ms())
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=budget.ms())
    notebook.evaluate("""(nb, ms) => new Promise((done, fail) => {
        const t0 = Date.now(), prompts = () => [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
        const poll = () => prompts().every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim())) ? done()
            : Date.now() - t0 > ms ? fail(new Error('Run All did not finish in time')) : setTimeout(poll, 250);
        poll();
    })""", budget.ms())  # every code cell numbered: all ran (a stopped run leaves [*] or [ ])
    page.keyboard.press("ControlOrMeta+s")  # what the browser holds, saved to the served copy: the exact output types
    page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current:not(.jp-mod-dirty)").wait_for(timeout=budget.ms())
    saved = nbformat.read(saved_path, as_version=4)
    outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs]
    errors = [(o.get("ename"), o.get("evalue")) for o in outputs if o.output_type == "error"]
    assert not errors, f"outputs with an error: {errors}"
    shown = [t[:200] for t in notebook.locator(".jp-OutputArea-output").all_inner_texts()
             if "Traceback" in t or "Error displaying widget" in t]
    assert not shown, f"the page shows errors: {shown}"
    assert page.locator(".jp-Dialog").count() == 0, "a dialog is open (kernel died?)"
    assert not bad_formulas(notebook), f"formulas MathJax could not typeset: {bad_formulas(notebook)}"
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    images = notebook.locator(".jp-RenderedImage img").evaluate_all(
        "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    # the explorer's figure lives in its widget's state, not in a cell's outputs: one image more than the file has
    assert pngs >= 3 and len(images) > pngs, f"{pngs} figures in the notebook, {len(images)} images in the page"
    assert all(done and w > 100 and h > 100 for done, w, h in images), f"an image did not decode: {images}"
    cell(notebook, 0).scroll_into_view_if_needed(timeout=budget.ms())
    page.screenshot(path=SHOTS / f"1_{CHAPTER}_after_run_all.png")
    figure = notebook.locator(".jp-Cell", has=page.locator(".jp-RenderedImage")).first.locator(".jp-OutputArea")
    figure.screenshot(path=SHOTS / f"2_{CHAPTER}_first_figure.png", timeout=budget.ms())
    stderr = "[data-mime-type='application/vnd.jupyter.stderr']"
    return notebook.locator(f".jp-OutputArea-output{stderr}").all_inner_texts()


def use_the_explorer(page, notebook, budget: Budget) -> None:
    """The explorer renders as widgets; another method in its dropdown and one step of its size slider change what it
    prints and draws."""
    explorer = notebook.locator(".widget-interact").filter(has=page.locator("select")).first
    explorer.scroll_into_view_if_needed(timeout=budget.ms())
    shown = explorer.locator(".widget-output")
    before_text, before_image = shown.inner_text(), shown.locator("img").get_attribute("src")
    assert "Δh = x W_down W_up (f = identity)" in before_text, before_text  # LoRA, the explorer's default
    explorer.screenshot(path=SHOTS / f"3_{CHAPTER}_explorer.png")
    explorer.locator(".widget-dropdown", has_text="method").locator("select").select_option("parallel adapter")
    shown.get_by_text("Δh = ReLU(x W_down) W_up").wait_for(timeout=budget.ms())
    size = explorer.locator(".widget-slider", has_text="size")
    size.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # size 8 -> 9
    size.locator(".widget-readout", has_text="9").wait_for(timeout=budget.ms())
    # a parallel adapter on the FFN of each of MiniLM's 6 layers, m = 9: 6 · (2 · 9 · 384 + 384 + 9) numbers
    shown.get_by_text(f"trains {6 * (2 * 9 * 384 + 384 + 9):,} numbers").wait_for(timeout=budget.ms())
    page.wait_for_function("([el, src]) => { const i = el.querySelector('img'); return i && i.src !== src && "
                           "i.complete && i.naturalWidth > 100; }",
                           arg=[shown.element_handle(), before_image], timeout=budget.ms())
    explorer.screenshot(path=SHOTS / f"4_{CHAPTER}_explorer_parallel_adapter_size_9.png")


def answer_an_exercise(page, base: str, token: str, budget: Budget) -> None:
    """exercises/08: Q3 right -> the pass line; Q3 wrong (one layer counted, not 6) -> the hint for that mistake."""
    page.goto(f"{base}/lab/tree/exercises/{CHAPTER}.ipynb?reset&token={token}", timeout=budget.ms())
    notebook = current_notebook(page, budget)
    for session in api(base, token, "/api/sessions"):  # the chapter's and the index's kernels are no longer needed
        if session["path"].startswith("course/"):
            api(base, token, f"/api/sessions/{session['id']}", "DELETE")
    cell(notebook, 1).locator(".cm-content").click(timeout=budget.ms())
    page.keyboard.press("Shift+Enter")  # import minipeft, grader = mp.exercises.grader("08_unified")
    q3, check = 9, 10
    assert "ffn_lora_params" in cell(notebook, q3).inner_text() and 'check("q3")' in cell(notebook, check).inner_text()
    ffn = 6 * 2 * 8 * (384 + 1536)  # LoRA r = 8 on W_in and W_out of 6 layers: 184,320
    attn = ffn // (6 * 2 * (384 + 384))  # the rank on W_q and W_v with as many numbers: 20
    feedback = cell(notebook, check).locator(".jp-OutputArea")
    run_cell_with(page, notebook, q3, f"ffn_lora_params = {ffn}\nattn_rank = {attn}", budget)
    feedback.get_by_text("q3: all 8 public checks pass ✓").wait_for(timeout=budget.ms())
    cell(notebook, check).scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / f"5_exercise_{CHAPTER}_q3_pass.png")
    run_cell_with(page, notebook, q3, f"ffn_lora_params = {ffn // 6}\nattn_rank = {attn}", budget)
    feedback.get_by_text("Count every one of the 6 layers, not one.").wait_for(timeout=budget.ms())
    assert "pass ✓" not in feedback.inner_text() and "q3: 6 of 8 public checks pass." in feedback.inner_text()
    cell(notebook, check).scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / f"6_exercise_{CHAPTER}_q3_hint.png")


def test_a_student_opens_the_course_runs_a_chapter_and_checks_an_exercise_in_jupyterlab(chromium, budget, lab, browser):
    base, token, served = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    page = browser.contexts[0].new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    console = []  # what the page's JavaScript reports: nbclient has no page, so it never sees these
    page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    try:
        chapter = index_then_chapter(page, base, token, budget)
        stderr = run_all_and_check_outputs(page, chapter, served / "course" / f"{CHAPTER}.ipynb", budget)
        use_the_explorer(page, chapter, budget)
        answer_an_exercise(page, base, token, budget)
    except Exception:
        page.screenshot(path=SHOTS / "failure.png")
        raise
    assert not [c for c in console if c.startswith("uncaught")], console
    print(f"\nbrowser test: {budget.elapsed():.1f} s from JupyterLab's start to the last check; stderr in "
          f"{len(stderr)} output(s) {[t[:150] for t in stderr]}; the page's JavaScript errors: {console or 'none'}; "
          f"screenshots in {SHOTS.relative_to(ROOT)}/: " + ", ".join(sorted(p.name for p in SHOTS.glob("*.png"))))
