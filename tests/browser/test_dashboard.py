"""The dashboard as a user sees it, in a real headless Chromium, against a real `ferry server`
(embedded backend, and the AWS one under FERRY_EMULATORS=1), with the real CLI and agents.

Selectors are the DOM contract of docs/dashboard.md ("What tests rely on") and visible text.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from conftest import LONG, screenshot
from playwright.sync_api import expect

MS = 1000
# A flow that logs on both streams over ~3 s, so a page opened before it starts sees the lines
# arrive.
LOG_SCRIPT = """echo "first line"
sleep 2
echo "second line"
echo "a warning" >&2
sleep 1
echo "last line"
"""
NAV = ["Overview", "Deployments", "Runs", "Work queues"]


def mark_document(page) -> None:
    """Marks the current document: `assert_not_reloaded` fails if it was replaced since."""
    page.evaluate("window.__ferryTestMark = 'kept'")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__ferryTestMark") == "kept", (
        "the page was reloaded or navigated away: the update did not come live"
    )


def deployment_paused(server, deployment: str) -> bool:
    d = server.cli.json("deployment", "inspect", deployment)
    return d["spec"]["paused"] if "spec" in d else d["paused"]


def runs_of(server, deployment: str) -> list[dict]:
    return server.cli.json("flow-run", "ls", "--deployment", deployment, "--all")


# ---------------------------------------------------------------------------------------------


def test_the_server_under_test_runs_on_the_backend_named(server, backend, page):
    # The harness itself: each parametrization really reaches a server on that backend.
    r = page.request.get(server.url + "/v1/health")
    assert r.status == 200
    assert r.json()["backend"] == backend


def test_a_run_created_by_the_cli_appears_on_runs_and_turns_completed_without_a_reload(
    server, page
):
    dep = server.deploy_script("hello", LOG_SCRIPT)
    run_id = server.run_now(dep)

    page.goto(server.url + "/runs")
    row = page.locator(f'table#runs tr[data-run-id="{run_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("td.deployment")).to_contain_text(dep)
    # No agent yet: the run waits.
    expect(row.locator("td.state")).to_have_text(re.compile(r"^\s*(Scheduled|Late)\s*$"))

    mark_document(page)
    server.agent()
    expect(row.locator("td.state")).to_have_text(
        re.compile(r"^\s*Completed\s*$"), timeout=LONG * MS
    )
    assert_not_reloaded(page)
    assert server.flow_run(run_id)["state"] == "completed"


def test_the_run_page_shows_log_lines_and_the_final_state_as_they_happen(server, page):
    dep = server.deploy_script("logs", LOG_SCRIPT)
    run_id = server.run_now(dep)

    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text(re.compile(r"^\s*(Scheduled|Late)\s*$"))
    mark_document(page)
    server.agent()

    logs = page.locator("pre#logs")
    expect(logs).to_contain_text("stdout | first line", timeout=LONG * MS)
    expect(logs).to_contain_text("stdout | second line", timeout=LONG * MS)
    expect(logs).to_contain_text("stderr | a warning", timeout=LONG * MS)
    expect(logs).to_contain_text("stdout | last line", timeout=LONG * MS)
    expect(page.locator("#run-state")).to_have_text(
        re.compile(r"^\s*Completed\s*$"), timeout=LONG * MS
    )
    assert_not_reloaded(page)

    # Every flow output line the CLI prints ("<time> stdout | ...") is on the page, once.
    shown = logs.inner_text()
    cli_lines = re.findall(
        r"^\S+ ((?:stdout|stderr) \| .*)$", server.cli.ok("flow-run", "logs", run_id), re.M
    )
    assert len(cli_lines) == 4, cli_lines
    for body in cli_lines:
        assert shown.count(body) == 1, f"{body!r} shown {shown.count(body)} times:\n{shown}"

    # After a reload, the history lists every state the run went through, in order.
    page.reload()
    history = [h["state"] for h in server.flow_run(run_id)["history"]]
    items = page.locator("ol#history li")
    expect(items).to_have_count(len(history))
    texts = items.all_inner_texts()
    for state, text in zip(history, texts):
        assert state.lower() in text.lower(), f"history {texts} does not follow {history}"


def test_cancel_from_the_run_page_cancels_a_sleeping_run(server, page):
    dep = server.deploy_script("sleeper", 'echo "going to sleep"\nsleep 300\n')
    run_id = server.run_now(dep)
    server.agent()
    server.wait_state(run_id, "running")

    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text(re.compile(r"^\s*Running\s*$"))
    expect(page.locator("pre#logs")).to_contain_text("stdout | going to sleep", timeout=LONG * MS)
    page.locator("form#cancel button").click()
    page.wait_for_url(re.compile(rf"/runs/{re.escape(run_id)}$"))
    # The page follows it to Cancelled by itself; the CLI agrees.
    expect(page.locator("#run-state")).to_have_text(
        re.compile(r"^\s*Cancelled\s*$"), timeout=30 * MS
    )
    run = server.wait_state(run_id, "cancelled", timeout=30)
    assert [h["state"] for h in run["history"]][-2:] == ["cancelling", "cancelled"]
    page.reload()
    expect(page.locator("form#cancel button")).to_have_count(0)


def test_run_now_with_parameters_creates_a_run_with_those_parameters(server, page):
    dep = server.deploy_script("params", 'echo "n is $1"\n', "--param", "n=1", "--param", "word=hi")
    page.goto(f"{server.url}/deployments/{dep}")
    page.locator("form#run-now textarea[name=parameters]").fill('{"n": 21, "colour": "blue"}')
    page.locator("form#run-now").get_by_role("button", name="Run now").click()

    page.wait_for_url(re.compile(r"/runs/[^/?#]+$"))
    run_id = urllib.parse.urlsplit(page.url).path.rsplit("/", 1)[1]
    run = server.flow_run(run_id)
    assert run["deployment"] == dep
    # The deployment's defaults, overridden by what was typed.
    assert run["parameters"] == {"n": 21, "word": "hi", "colour": "blue"}
    params = page.locator("#parameters")
    for text in ["n", "21", "word", "hi", "colour", "blue"]:
        expect(params).to_contain_text(text)
    assert [r["id"] for r in runs_of(server, dep)] == [run_id]


def test_bad_json_parameters_show_an_error_naming_the_field_and_create_nothing(server, page):
    dep = server.deploy_script("strict", "true\n", "--param", "n=1")
    page.goto(f"{server.url}/deployments/{dep}")
    for bad in ['{"n": 21,', "[1, 2]", "not json"]:
        page.locator("form#run-now textarea[name=parameters]").fill(bad)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.locator("form#run-now").get_by_role("button", name="Run now").click()
        assert 400 <= answer.value.status < 500, f"{bad!r} answered {answer.value.status}"
        error = page.locator(".error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("parameters")
        # Still the deployment's page, with its form.
        expect(page.locator("form#run-now textarea[name=parameters]")).to_be_visible()
    assert runs_of(server, dep) == []


def test_the_runs_list_filters_by_state_deployment_and_work_queue(server, page):
    server.cli.ok("work-queue", "create", "etl")
    good = server.deploy_script("good", "true\n")
    bad = server.deploy_script("bad", "exit 3\n", "-q", "etl")
    done, failed = server.run_now(good), server.run_now(bad)
    server.agent()
    server.agent("-q", "etl")
    server.wait_state(done, "completed")
    server.wait_state(failed, "failed")

    def shown() -> set[str]:
        rows = page.locator("table#runs tr[data-run-id]")
        return {rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())}

    page.goto(server.url + "/runs")
    expect(page.locator(f'tr[data-run-id="{failed}"]')).to_be_visible()
    assert shown() == {done, failed}
    filters = page.locator("form#filters")
    for field, value, want in [
        ("state", "failed", {failed}),
        ("state", "completed", {done}),
        ("deployment", bad, {failed}),
        ("work_queue", "default", {done}),
    ]:
        page.goto(server.url + "/runs")
        filters.locator(f"select[name={field}]").select_option(value=value)
        filters.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(rf"[?&]{field}="))
        expect(page.locator("table#runs tr[data-run-id]")).to_have_count(len(want))
        assert shown() == want, f"{field}={value}: {shown()} instead of {want}"
        expect(page.locator("h1")).to_be_visible()


def test_the_runs_list_pages_with_the_older_link(server, page):
    dep = server.deploy_script("many", "true\n")
    flow, name = dep.split("/")
    created = set()
    for i in range(55):
        status, _, body = server.http("POST", f"/v1/deployments/{flow}/{name}/runs", {})
        assert status in (200, 201), f"create run {i}: {status} {body}"
        created.add(json.loads(body)["id"])

    seen: list[str] = []
    page.goto(f"{server.url}/runs?deployment={urllib.parse.quote(dep)}")
    for _ in range(3):
        rows = page.locator("table#runs tr[data-run-id]")
        expect(rows.first).to_be_visible()
        seen += [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())]
        if page.locator("a#older").count() == 0:
            break
        page.locator("a#older").click()
        page.wait_for_url(re.compile(r"[?&]before="))
    assert len(seen) == 55 and set(seen) == created, f"{len(seen)} rows, {len(set(seen))} distinct"
    expect(page.locator("a#older")).to_have_count(0)


def test_a_form_posted_from_another_site_changes_nothing(server, page):
    dep = server.deploy_script("target", 'echo "going to sleep"\nsleep 300\n')
    run_id = server.run_now(dep)
    server.agent()
    server.wait_state(run_id, "running")
    # A page of another site with forms aimed at the dashboard (served by the browser itself).
    evil = "http://evil.example/"
    forms = "".join(
        f'<form method="post" action="{server.url}{action}"><button id="b{i}">go</button></form>'
        for i, action in enumerate(
            [f"/runs/{run_id}/cancel", f"/deployments/{dep}/pause", "/work-queues/default/pause"]
        )
    )
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=forms))
    for i in range(3):
        page.goto(evil)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.locator(f"#b{i}").click()
        assert answer.value.status == 403, f"form {i} answered {answer.value.status}"
    assert server.flow_run(run_id)["state"] == "running"
    assert deployment_paused(server, dep) is False
    assert server.cli.json("work-queue", "inspect", "default")["paused"] is False


def test_pause_and_resume_a_deployment_from_its_page(server, page):
    dep = server.deploy_script("hourly", "true\n", "--interval", "1h")
    page.goto(f"{server.url}/deployments/{dep}")
    page.locator("form#pause button").click()
    expect(page.locator("form#resume button")).to_be_visible()
    expect(page.locator("form#pause button")).to_have_count(0)
    assert deployment_paused(server, dep) is True

    page.goto(f"{server.url}/deployments")
    expect(page.locator(f'table#deployments tr[data-deployment="{dep}"]')).to_contain_text(
        re.compile("paused", re.I)
    )

    page.goto(f"{server.url}/deployments/{dep}")
    page.locator("form#resume button").click()
    expect(page.locator("form#pause button")).to_be_visible()
    expect(page.locator("form#resume button")).to_have_count(0)
    assert deployment_paused(server, dep) is False


def test_pause_and_resume_a_work_queue_from_the_queues_page(server, page):
    server.cli.ok("work-queue", "create", "nightly", "--limit", "2")
    page.goto(f"{server.url}/work-queues")
    row = page.locator('table#queues tr[data-queue="nightly"]')
    expect(row.locator("td.limit")).to_contain_text("2")
    row.locator("form.pause button").click()
    expect(row.locator("form.resume button")).to_be_visible()
    expect(row.locator("form.pause button")).to_have_count(0)
    assert server.cli.json("work-queue", "inspect", "nightly")["paused"] is True

    row.locator("form.resume button").click()
    expect(row.locator("form.pause button")).to_be_visible()
    assert server.cli.json("work-queue", "inspect", "nightly")["paused"] is False
    # The other queue was left alone.
    assert server.cli.json("work-queue", "inspect", "default")["paused"] is False


def test_a_token_protected_server_shows_nothing_without_the_token(
    token_server, token, backend, page
):
    s = token_server
    dep = s.deploy_script("secret", "true\n")
    run_id = s.run_now(dep)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    pages = ["/", "/deployments", f"/deployments/{dep}", "/runs", f"/runs/{run_id}", "/work-queues"]
    for path in pages:
        page.goto(s.url + path)
        url = urllib.parse.urlsplit(page.url)
        assert url.path == "/sign-in", f"{path} showed {page.url} without a session"
        assert urllib.parse.parse_qs(url.query).get("next") == [path]
        # Nothing that the asked-for URL does not already say (the form keeps `next`).
        html = page.content()
        leaked = [x for x in (run_id, dep, "secret") if x not in path and x in html]
        assert not leaked, f"{path} without a session shows {leaked}"
        for data in ["table#runs", "table#deployments", "table#queues", "pre#logs", "#run-state"]:
            expect(page.locator(data)).to_have_count(0)
        expect(page.locator("form#sign-in input[name=token]")).to_be_visible()
    screenshot(page, f"{backend}-sign-in")
    # Without a browser: pages redirect, the live endpoint and the API refuse.
    status, headers, _ = s.http("GET", "/runs")
    assert status == 303 and headers.get("Location", headers.get("location", "")).startswith(
        "/sign-in"
    )
    assert s.http("GET", f"/runs/{run_id}/live?offset=0")[0] == 401
    assert s.http("GET", f"/v1/flow-runs/{run_id}")[0] == 401

    # A wrong token: an error, no session.
    page.goto(s.url + "/sign-in?next=/runs")
    page.locator("form#sign-in input[name=token]").fill(token + "-wrong")
    page.locator("form#sign-in").get_by_role("button", name="Sign in").click()
    expect(page.locator(".error")).to_be_visible()
    assert urllib.parse.urlsplit(page.url).path == "/sign-in"
    assert "ferry_session" not in {c["name"] for c in page.context.cookies()}
    screenshot(page, f"{backend}-sign-in-wrong-token")

    # The right one: back to the page asked for, with the data.
    page.locator("form#sign-in input[name=token]").fill(token)
    page.locator("form#sign-in").get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/runs$"))
    expect(page.locator(f'table#runs tr[data-run-id="{run_id}"]')).to_be_visible()
    session = {c["name"]: c for c in page.context.cookies()}["ferry_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert token not in session["value"]
    page.goto(f"{s.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_be_visible()
    # The cookie is no key to the API: /v1 stays bearer-only.
    assert page.request.get(f"{s.url}/v1/flow-runs/{run_id}").status == 401

    # Signing out ends the session.
    page.get_by_role("button", name=re.compile(r"sign out", re.I)).click()
    page.goto(s.url + "/runs")
    assert urllib.parse.urlsplit(page.url).path == "/sign-in"
    assert run_id not in page.content()
    assert not [u for u in requested if token in u], "the token appeared in a URL"


def test_ferry_ui_shows_a_token_protected_server_without_a_sign_in_and_acts_through_it(
    token_server, page
):
    s = token_server
    dep = s.deploy_script("proxied", 'echo "going to sleep"\nsleep 300\n')
    run_id = s.run_now(dep)
    s.agent()
    s.wait_state(run_id, "running")
    ui = s.ui()

    page.goto(ui + "/runs")
    assert urllib.parse.urlsplit(page.url).path == "/runs", page.url
    expect(page.locator(f'table#runs tr[data-run-id="{run_id}"] td.state')).to_have_text(
        re.compile(r"^\s*Running\s*$")
    )
    # The run page follows the log through the proxy, and cancel goes through it too.
    page.goto(f"{ui}/runs/{run_id}")
    expect(page.locator("pre#logs")).to_contain_text("stdout | going to sleep", timeout=LONG * MS)
    page.locator("form#cancel button").click()
    expect(page.locator("#run-state")).to_have_text(
        re.compile(r"^\s*Cancelled\s*$"), timeout=30 * MS
    )
    s.wait_state(run_id, "cancelled", timeout=30)
    assert not page.context.cookies(), "ferry ui handed the browser a cookie"
    # The server itself still asks this browser to sign in.
    page.goto(s.url + "/runs")
    assert urllib.parse.urlsplit(page.url).path == "/sign-in"


def test_every_page_renders_without_a_console_error_and_is_screenshotted(server, backend, page):
    server.cli.ok("work-queue", "create", "etl", "--limit", "2")
    hello = server.deploy_script("hello", LOG_SCRIPT, "--interval", "1h", "--param", "n=1")
    broken = server.deploy_script("broken", 'echo "about to fail" >&2\nexit 3\n', "-q", "etl")
    server.deploy_script("paused", "true\n", "--cron", "0 6 * * *", "--timezone", "Europe/Paris")
    server.cli.ok("deployment", "pause", "flow/paused")
    done = server.run_now(hello)
    failed = server.run_now(broken)
    server.agent()
    server.agent("-q", "etl")
    server.wait_state(done, "completed")
    server.wait_state(failed, "failed")

    pages = [
        ("overview", "/", None),
        ("deployments", "/deployments", "table#deployments"),
        ("deployment", f"/deployments/{hello}", "form#run-now"),
        ("runs", "/runs", "table#runs"),
        ("run", f"/runs/{done}", "pre#logs"),
        ("run-failed", f"/runs/{failed}", "pre#logs"),
        ("work-queues", "/work-queues", "table#queues"),
    ]
    for name, path, landmark in pages:
        answer = page.goto(server.url + path)
        assert answer is not None and answer.status == 200, f"{path}: {answer and answer.status}"
        headers = answer.headers
        assert "default-src 'self'" in headers.get("content-security-policy", ""), headers
        assert headers.get("cache-control") == "no-store", headers
        expect(page.locator("h1")).to_be_visible()
        nav = page.locator("nav")
        for link in NAV:
            expect(nav.get_by_role("link", name=link, exact=True)).to_be_visible()
        if landmark:
            expect(page.locator(landmark)).to_be_visible()
        page.wait_for_load_state("networkidle")
        screenshot(page, f"{backend}-{name}")
    # (Console errors are checked at the end, once every screenshot is written.)

    # What the pages show of that data: the overview names the failing deployment (as a link
    # to it) and the queues; the runs list and the run page show the failure.
    page.goto(server.url + "/")
    expect(page.locator(f'main a[href="/deployments/{broken}"]').first).to_be_visible()
    expect(page.locator("main")).to_contain_text("etl")
    page.goto(server.url + "/runs")
    expect(page.locator(f'tr[data-run-id="{failed}"] td.state')).to_have_text(
        re.compile(r"^\s*Failed\s*$")
    )
    page.goto(f"{server.url}/runs/{failed}")
    expect(page.locator("pre#logs")).to_contain_text("stderr | about to fail")
    page.goto(server.url + "/deployments")
    expect(page.locator(f'tr[data-deployment="{hello}"] td.schedule')).not_to_be_empty()
    expect(page.locator(f'tr[data-deployment="{hello}"] td.next')).not_to_be_empty()

    # The nav leads where it says.
    for link, path in zip(NAV, ["/", "/deployments", "/runs", "/work-queues"]):
        page.locator("nav").get_by_role("link", name=link, exact=True).click()
        page.wait_for_url(re.compile(rf"{re.escape(server.url)}{re.escape(path)}(\?.*)?$"))

    # The overview as the README shows it: one 1280x800 screen.
    page.goto(server.url + "/")
    page.wait_for_load_state("networkidle")
    screenshot(page, f"{backend}-overview-1280x800", full_page=False)
    assert page.console.errors == [], f"console errors: {page.console.errors}"



def test_a_page_or_run_that_does_not_exist_shows_a_404_page_to_find_the_way_back(server, page):
    missing_run = "01a23300-0000-7000-8000-000000000000"
    for path in ["/no-such-page", f"/runs/{missing_run}", "/deployments/flow/missing"]:
        answer = page.goto(server.url + path)
        assert answer is not None and answer.status == 404, f"{path}: {answer and answer.status}"
        assert "text/html" in answer.headers.get("content-type", ""), answer.headers
        expect(page.locator("h1")).to_be_visible()
        nav = page.locator("nav")
        for link in NAV:
            expect(nav.get_by_role("link", name=link, exact=True)).to_be_visible()
    # An API client still gets the JSON error.
    status, headers, body = server.http(
        "GET", "/no-such-page", headers={"accept": "application/json"}
    )
    assert status == 404 and headers.get("content-type", "").startswith("application/json"), body
